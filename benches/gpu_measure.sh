#!/usr/bin/env bash
# Everything BENCHMARKS.md reports for a CUDA GPU, measured in one run on one card: the adapter,
# cuBLAS and cuSPARSE (benches/cuda_baselines.py), the latency model (`eie plan`), the check of
# every kernel against the CPU model (`eie demo --no-bench`, `eie verify`, `eie demo --mnist`),
# the GPU kernels of this tree and of a "before" commit (`eie bench --gpu-only`), and the same
# bench under a sweep of schedule overrides (EIE_GPU_SCHEDULE).
#
# Two halves, because the GPU machine has the NVIDIA driver, CUDA, PyTorch and python3 but no
# Rust, no OpenBLAS, no Vulkan loader and no network:
#
#   1. On the build machine (x86-64), from a checkout:
#        bash benches/gpu_measure.sh prepare [BEFORE_COMMIT]
#      builds this tree and BEFORE_COMMIT (default: $BEFORE_DEFAULT below) with
#      `--no-default-features --features gpu` (no OpenBLAS), strips both, and fills ONE
#      git-ignored folder, .gl/, with everything that travels: eie, eie-before, the Vulkan loader
#      packages (*.deb from EIE_GL_DEBS, default ../shared/device/gl), cuda_baselines.py and
#      versions.txt. It checks with ldd that the binaries need nothing but libc, libm, libgcc_s
#      and the dynamic loader (the Vulkan loader is opened at run time), and that .gl/ and the
#      working tree together fit in 64 MiB.
#
#   2. On the GPU machine, from a copy of the checkout with .gl/ carried beside it:
#        OUT=<folder that comes back> bash benches/gpu_measure.sh run
#      Unpacks the Vulkan loader where the system has none, finds the adapter (falling back to
#      VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json), then runs every
#      step under `timeout` within a time budget (EIE_MEASURE_BUDGET_S, default 420 s; the whole
#      run ends within 8 minutes), records each step's status, exit code and seconds, and goes on
#      after a failure. $OUT receives three files: summary.md (benches/gpu_summary.py: the device,
#      the steps, and per layer and batch each GPU kernel's median and range beside the latency
#      model and cuBLAS / cuSPARSE, before, after and per sweep setting), steps.tsv, and
#      results.tar.gz with every output and log. Exit status 1 when a step failed or timed out.
#
# Settings of `run` (environment):
#   EIE_MEASURE_QUICK=1       one small layer at batch 1, one sample, one sweep setting, smaller
#                             verification: a check of the script itself (e.g. on lavapipe).
#   EIE_MEASURE_BIN           the binary to measure (default .gl/eie, else target/release/eie)
#   EIE_MEASURE_BEFORE_BIN    the "before" binary (default .gl/eie-before; absent: skipped)
#   EIE_MEASURE_GL            the folder prepare filled (default .gl)
#   EIE_MEASURE_BUDGET_S      seconds for all steps together
#   EIE_MEASURE_SCALE         multiplies every step's time limit and the budget (a software
#                             adapter such as lavapipe is 100-1000x slower than an H100)
#   EIE_MEASURE_BENCH_ARGS    replaces the size of the before / after benches (default
#                             `--batch 1,64 --samples 10`; e.g. `--quick` on lavapipe)
#   EIE_MEASURE_SWEEP         sweep settings, `SCHEDULE@BATCHES` separated by `;`, e.g.
#                             `target=256@1,64;tile=1@64` (default: the list in sweep_settings)
#   EIE_MEASURE_SWEEP_LAYERS  paper layers of the sweep (default Alex-6,VGG-6,NT-Wd)
#   EIE_MEASURE_SWEEP_ARGS    replaces the size of each sweep bench (default `--samples 5`)
#   EIE_MEASURE_PLAN_DEVICE   the latency model's device where `eie plan` has --device (h100)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

# The kernel this work started from (second generation): the default "before".
BEFORE_DEFAULT=517abbcd3787c4f4baaf49305d915ceda39d12c4
GL=${EIE_MEASURE_GL:-.gl}
MAX_TRAVEL_BYTES=$((64 * 1024 * 1024))
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

die() {
    echo "gpu_measure: $*" >&2
    exit 1
}

# Builds the snapshot of a tree in folder $1 without OpenBLAS into target folder $2 and copies
# the stripped binary to $3. Snapshots (fresh file times, their own target folder) because cargo
# judges a path package up to date by file times: in a target folder shared by several checkouts
# an older tree could otherwise pass for built by another's newer build.
build_snapshot() {
    local src=$1 target=$2 dest=$3
    (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release --locked --no-default-features \
        --features gpu --bin eie) || die "build of $src failed"
    cp "$target/release/eie" "$dest" || die "no binary at $target/release/eie"
    strip "$dest" || die "strip $dest failed"
}

# Fails unless binary $1 needs only libc, libm, libgcc_s, the dynamic loader (and the libc
# companions that older glibc splits out); the Vulkan loader is opened at run time.
check_libraries() {
    local bin=$1 deps bad
    deps=$(ldd "$bin") || die "ldd $bin failed"
    local ok='^\s*(linux-vdso\.so|(/lib64/)?ld-linux-x86-64\.so|(libc|libm|libgcc_s|libpthread|libdl|librt)\.so)'
    bad=$(echo "$deps" | grep -Ev "$ok" || true)
    [ -z "$bad" ] || die "$bin needs libraries the GPU machine lacks:
$bad"
    local glibc
    glibc=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    echo "  $bin: $(echo "$deps" | awk '{print $1}' | tr '\n' ' ')(newest symbol ${glibc:-?})"
}

prepare() {
    local before=${1:-$BEFORE_DEFAULT}
    local debs=${EIE_GL_DEBS:-../shared/device/gl}
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    local before_rev
    before_rev=$(git rev-parse --verify "$before^{commit}") || die "no commit $before"
    git check-ignore -q "$GL/" || die "$GL/ is not git-ignored: it would travel twice"
    mkdir -p "$GL" || die "cannot create $GL"
    rm -f "$GL/eie" "$GL/eie-before" "$GL"/*.deb

    # Both builds share one target folder of their own (the dependencies build once).
    local snap="$target/gpu-measure" src
    src=$(mktemp -d) || die "mktemp failed"
    echo "building this tree ($(git describe --always --dirty)) without OpenBLAS"
    # Tracked and untracked files as they are now, uncommitted changes included.
    git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r cp --parents -t "$src" 2>/dev/null
    [ -f "$src/Cargo.toml" ] || die "cannot copy the tree to $src"
    build_snapshot "$src" "$snap" "$GL/eie"
    rm -rf "$src"

    echo "building $before_rev without OpenBLAS"
    src=$(mktemp -d) || die "mktemp failed"
    # -m: the files get the time of extraction, not the commit's.
    git archive --format=tar "$before_rev" | tar -x -m -C "$src" ||
        die "git archive $before_rev failed"
    build_snapshot "$src" "$snap" "$GL/eie-before"
    rm -rf "$src"

    if compgen -G "$debs/*.deb" >/dev/null; then
        cp "$debs"/*.deb "$GL/" || die "cannot copy $debs/*.deb"
    else
        echo "warning: no Vulkan loader packages in $debs (set EIE_GL_DEBS); the GPU machine" \
            "then needs its own libvulkan.so.1" >&2
    fi
    cp benches/cuda_baselines.py "$GL/" || die "cannot copy cuda_baselines.py"
    {
        local dirty=""
        git diff --quiet HEAD -- . 2>/dev/null || dirty=" (with uncommitted changes)"
        echo "after	$(git rev-parse HEAD)$dirty"
        echo "before	$before_rev"
        echo "prepared	$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$GL/versions.txt"

    echo "libraries:"
    check_libraries "$GL/eie"
    check_libraries "$GL/eie-before"

    local gl_bytes tree_bytes
    gl_bytes=$(du -sb "$GL" | cut -f1)
    tree_bytes=$(git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    ls -l "$GL"
    echo "$GL/: $gl_bytes bytes ($((gl_bytes / 1024)) KiB); working tree $tree_bytes bytes;" \
        "together $(((gl_bytes + tree_bytes) / 1024)) KiB of $((MAX_TRAVEL_BYTES / 1024)) KiB"
    ((gl_bytes + tree_bytes <= MAX_TRAVEL_BYTES)) || die "what travels exceeds 64 MiB"
    echo "ready. On the GPU machine (carry $GL): OUT=<out> bash benches/gpu_measure.sh run"
}

# ---------------------------------------------------------------------------------------------
# run

W= # work folder: everything measured goes here and into results.tar.gz
START_US=0
BUDGET_S=420
SCALE=1
QUICK=0
TEMPS=() # folders this run made; removed when it ends

cleanup() { ((${#TEMPS[@]})) && rm -rf "${TEMPS[@]}"; }
FAILED=0

# Microseconds since the epoch (EPOCHREALTIME: bash 5; its separator follows the locale).
now_us() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        echo "${EPOCHREALTIME//[!0-9]/}"
    else
        date +%s%6N
    fi
}

# Seconds left of the budget (may be negative).
remaining() { echo $((BUDGET_S - ($(now_us) - START_US) / 1000000)); }

# record NAME STATUS EXIT SECONDS NOTE
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >>"$W/steps.tsv"
    printf '%-22s %-8s exit %-4s %7s s  %s\n' "$1" "$2" "$3" "$4" "$5"
    case $2 in failed | timeout) FAILED=1 ;; esac
}

# step NAME LIMIT_S STDOUT -- COMMAND...: runs COMMAND under `timeout` (LIMIT_S, cut to the
# budget left), its stdout to STDOUT (`-`: the step's log), its stderr to logs/NAME.log.
step() {
    local name=$1 limit=$(($2 * SCALE)) stdout=$3
    shift 4
    local left
    left=$(remaining)
    if ((left < 5)); then
        record "$name" skipped - 0.0 "time budget spent"
        return 1
    fi
    ((limit > left)) && limit=$left
    local log="$W/logs/$name.log"
    [ "$stdout" = - ] && stdout=$log
    local t0 rc status
    t0=$(now_us)
    {
        printf '$'
        printf ' %q' "$@"
        printf '\n'
    } >"$W/logs/$name.cmd"
    if [ "$stdout" = "$log" ]; then
        timeout -k 10 "$limit" "$@" >"$log" 2>&1
    else
        timeout -k 10 "$limit" "$@" >"$stdout" 2>"$log"
    fi
    rc=$?
    case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
    esac
    local secs note=
    secs=$(awk -v d=$(($(now_us) - t0)) 'BEGIN {printf "%.1f", d / 1e6}')
    [ "$status" = timeout ] && note="limit ${limit} s"
    if [ "$status" = failed ]; then
        note=$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)
    fi
    record "$name" "$status" "$rc" "$secs" "$note"
    [ "$status" = ok ]
}

# Is there a Vulkan adapter, and is it hardware? Prints "hardware", "software" or "none".
adapter_kind() {
    local line kind=none
    timeout -k 5 60 "$EIE" devices >"$W/devices.txt" 2>>"$W/logs/devices-probe.log" || {
        echo none
        return
    }
    # `[0] NAME (vulkan, DiscreteGpu)`, one line per adapter.
    while IFS= read -r line; do
        if [[ $line =~ ^\[[0-9]+\]\ .*\(vulkan,\ ([A-Za-z]+)\)$ ]]; then
            if [ "${BASH_REMATCH[1]}" = Cpu ]; then
                [ "$kind" = none ] && kind=software
            else
                kind=hardware
            fi
        fi
    done <"$W/devices.txt"
    echo "$kind"
}

# Does the dynamic linker's cache list a Vulkan loader? (Read whole: `grep -q` closing the pipe
# early would fail the pipeline under pipefail.)
system_loader() {
    local cache
    cache=$(ldconfig -p 2>/dev/null)
    [[ $cache == *"libvulkan.so.1 "* ]]
}

# The Vulkan loader: the system's if it has one, else the carried packages, unpacked into a
# private folder on the library path (no root needed, nothing of the system touched).
vulkan_loader() {
    local t0
    t0=$(now_us)
    if system_loader; then
        record vulkan-loader skipped - 0.0 "system loader present"
        return
    fi
    if ! compgen -G "$GL/*.deb" >/dev/null; then
        record vulkan-loader failed - 0.0 "no libvulkan.so.1 and no $GL/*.deb to unpack"
        return
    fi
    # Outside the work folder, which is archived.
    local root f rc=0
    root=$(mktemp -d "${TMPDIR:-/tmp}/eie-vulkan.XXXXXX") || die "mktemp failed"
    TEMPS+=("$root")
    for f in "$GL"/*.deb; do
        dpkg -x "$f" "$root" >>"$W/logs/vulkan-loader.log" 2>&1 || rc=$?
    done
    local libs
    libs=$(find "$root" -name 'libvulkan.so.1' -printf '%h\n' 2>/dev/null | head -1)
    export LD_LIBRARY_PATH="${libs:-$root/usr/lib/x86_64-linux-gnu}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local secs
    secs=$(awk -v d=$(($(now_us) - t0)) 'BEGIN {printf "%.1f", d / 1e6}')
    if [ "$rc" = 0 ] && [ -n "$libs" ]; then
        record vulkan-loader ok 0 "$secs" "unpacked $(basename -a "$GL"/*.deb | tr '\n' ' ')into $libs"
    else
        record vulkan-loader failed "$rc" "$secs" "dpkg -x failed or no libvulkan.so.1 in the packages"
    fi
}

# Finds the adapter, trying the NVIDIA ICD file and then the packages unpacked over / (the
# recipe seen working) while no hardware Vulkan adapter shows up; records step "devices".
find_adapter() {
    local t0 kind tried=""
    t0=$(now_us)
    kind=$(adapter_kind)
    if [ "$kind" != hardware ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$NVIDIA_ICD" ]; then
        export VK_DRIVER_FILES=$NVIDIA_ICD
        tried+="VK_DRIVER_FILES=$NVIDIA_ICD; "
        kind=$(adapter_kind)
        if [ "$kind" = none ]; then
            unset VK_DRIVER_FILES
            kind=$(adapter_kind)
        fi
    fi
    if [ "$kind" != hardware ] && [ "$(id -u)" = 0 ] && compgen -G "$GL/*.deb" >/dev/null &&
        ! system_loader; then
        local f
        for f in "$GL"/*.deb; do dpkg -x "$f" / >>"$W/logs/devices-probe.log" 2>&1; done
        ldconfig
        tried+="packages unpacked over /; "
        kind=$(adapter_kind)
        if [ "$kind" != hardware ] && [ -f "$NVIDIA_ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
            export VK_DRIVER_FILES=$NVIDIA_ICD
            kind=$(adapter_kind)
            [ "$kind" = none ] && unset VK_DRIVER_FILES && kind=$(adapter_kind)
        fi
    fi
    timeout -k 5 60 "$EIE" devices --json >"$W/devices.json" 2>>"$W/logs/devices-probe.log"
    cat "$W/devices.txt"
    {
        echo "adapter_kind	$kind"
        echo "VK_DRIVER_FILES	${VK_DRIVER_FILES:-}"
        echo "LD_LIBRARY_PATH	${LD_LIBRARY_PATH:-}"
        echo "tried	${tried:-nothing}"
    } >"$W/env.tsv"
    local secs
    secs=$(awk -v d=$(($(now_us) - t0)) 'BEGIN {printf "%.1f", d / 1e6}')
    case $kind in
    hardware) record devices ok 0 "$secs" "${tried}${VK_DRIVER_FILES:+VK_DRIVER_FILES set}" ;;
    software) record devices ok 0 "$secs" "software adapter only (${tried}no hardware one)" ;;
    *) record devices failed 1 "$secs" "no Vulkan adapter (${tried}see logs/devices-probe.log)" ;;
    esac
    [ "$kind" != none ]
}

# The default sweep: SCHEDULE@BATCHES per setting (EIE_GPU_SCHEDULE syntax, see docs/GPU.md):
# the workgroup target, the batch tile against the planner's four, one column group, and the
# row walk's lanes per row. The bench itself already shows both walks forced beside the
# planner's choice.
sweep_settings() {
    if [ -n "${EIE_MEASURE_SWEEP:-}" ]; then
        tr ';' '\n' <<<"$EIE_MEASURE_SWEEP" | grep -v '^\s*$'
    elif [ "$QUICK" = 1 ]; then
        echo "target=256@1"
    else
        cat <<'EOF'
target=256@1,64
target=1024@1,64
target=4096@1,64
tile=1@64
tile=2@64
groups=1@1
walk=rows,lanes=8@1
walk=rows,lanes=32@1
EOF
    fi
}

run() {
    local out=${OUT:-$ROOT/gpu-measure-out}
    mkdir -p "$out" || die "cannot create $out"
    out=$(cd "$out" && pwd)
    trap cleanup EXIT
    W=$(mktemp -d "${TMPDIR:-/tmp}/eie-measure.XXXXXX") || die "mktemp failed"
    TEMPS+=("$W")
    mkdir -p "$W/logs"
    START_US=$(now_us)
    QUICK=${EIE_MEASURE_QUICK:-0}
    SCALE=${EIE_MEASURE_SCALE:-1}
    [[ $SCALE =~ ^[1-9][0-9]*$ ]] || die "EIE_MEASURE_SCALE must be a whole number >= 1"
    if [ "$QUICK" = 1 ]; then
        BUDGET_S=${EIE_MEASURE_BUDGET_S:-$((240 * SCALE))}
    else
        BUDGET_S=${EIE_MEASURE_BUDGET_S:-$((420 * SCALE))}
    fi
    [[ $BUDGET_S =~ ^[0-9]+$ ]] || die "EIE_MEASURE_BUDGET_S must be a whole number of seconds"
    # The sweep sets the schedule override itself; every other step runs without one.
    unset EIE_GPU_SCHEDULE
    if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
        XDG_RUNTIME_DIR=$(mktemp -d "${TMPDIR:-/tmp}/eie-xdg.XXXXXX") || die "mktemp failed"
        TEMPS+=("$XDG_RUNTIME_DIR")
        export XDG_RUNTIME_DIR
    fi
    export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
    printf 'step\tstatus\texit\tseconds\tnote\n' >"$W/steps.tsv"

    EIE=${EIE_MEASURE_BIN:-}
    if [ -z "$EIE" ]; then
        if [ -x "$GL/eie" ]; then EIE=$GL/eie; else EIE=target/release/eie; fi
    fi
    local before=${EIE_MEASURE_BEFORE_BIN:-$GL/eie-before}
    [ -x "$EIE" ] || die "no binary at $EIE (run prepare on the build machine and carry $GL)"
    EIE=$(realpath "$EIE")
    {
        echo "mode	$([ "$QUICK" = 1 ] && echo quick || echo full)"
        echo "started	$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host	$(uname -n) $(uname -m)"
        echo "binary	$EIE"
        echo "before_binary	$before"
        echo "budget_s	$BUDGET_S"
        echo "scale	$SCALE"
        [ -f "$GL/versions.txt" ] && cat "$GL/versions.txt"
        "$EIE" --version 2>/dev/null | sed 's/^/version\t/'
    } >"$W/run.tsv"
    echo "measuring with $EIE; results to $out (work folder $W)"

    vulkan_loader
    find_adapter

    # cuBLAS / cuSPARSE first, on the same card, so that both benches can show them.
    local cuda="$W/cuda.jsonl" baselines=benches/cuda_baselines.py
    [ -f "$baselines" ] || baselines=$GL/cuda_baselines.py
    local t0 probe
    t0=$(now_us)
    local has_cuda='import torch
assert torch.cuda.is_available(), "no CUDA device"
print(torch.cuda.get_device_name())'
    if probe=$(timeout -k 5 90 python3 -c "$has_cuda" 2>&1); then
        echo "CUDA: $probe"
        step cuda-b1 150 "$cuda" -- python3 "$baselines"
        step cuda-b64 150 "$W/cuda-b64.jsonl" -- python3 "$baselines" --batch 64
        cat "$W/cuda-b64.jsonl" >>"$cuda" 2>/dev/null
    else
        local why
        why=$(echo "$probe" | grep -v '^\s*$' | tail -1 | cut -c1-120)
        local secs
        secs=$(awk -v d=$(($(now_us) - t0)) 'BEGIN {printf "%.1f", d / 1e6}')
        record cuda-b1 skipped - "$secs" "no CUDA / PyTorch: $why"
        record cuda-b64 skipped - 0.0 "no CUDA / PyTorch"
    fi
    local cuda_arg=()
    grep -q '"layer"' "$cuda" 2>/dev/null && cuda_arg=(--cuda "$cuda")

    # Every kernel against the dense oracle and the CPU model, and the MNIST classifier.
    local demo=(--out-dir "$W/demo") vb=64
    [ "$QUICK" = 1 ] && demo+=(--rows 512 --cols 512 --pes 8) && vb=4
    step verify 120 - -- "$EIE" demo --no-bench "${demo[@]}"
    if [ -f "$W/demo/alex7.eie.safetensors" ]; then
        step "verify-b$vb" 90 - -- "$EIE" verify "$W/demo/alex7.eie.safetensors" --batch "$vb" \
            --require-gpu
    else
        record "verify-b$vb" skipped - 0.0 "no model from step verify"
    fi
    if [ "$QUICK" = 1 ]; then
        # 1000 images through every kernel: seconds on a GPU, minutes on lavapipe.
        record mnist skipped - 0.0 "quick mode"
    else
        step mnist 90 - -- "$EIE" demo --mnist
    fi

    # The latency model (with `--device h100`, EIE_MEASURE_PLAN_DEVICE, where this build has the
    # flag): the paper's nine layers, or in quick mode the verified model (planning the paper's
    # layers takes a while on a small CPU).
    local device_arg=() help
    help=$("$EIE" plan --help 2>/dev/null)
    [[ $help == *--device* ]] && device_arg=(--device "${EIE_MEASURE_PLAN_DEVICE:-h100}")
    local plan_of=(--paper) b
    [ "$QUICK" = 1 ] && plan_of=("$W/demo/alex7.eie.safetensors")
    for b in 1 64; do
        step "plan-b$b" 120 "$W/plan-b$b.json" -- \
            "$EIE" plan "${plan_of[@]}" --batch "$b" --json "${device_arg[@]}"
    done

    # The benches: this tree, the "before" binary, then the sweep.
    local bench=(bench --gpu-only)
    if [ -n "${EIE_MEASURE_BENCH_ARGS:-}" ]; then
        local extra
        read -r -a extra <<<"$EIE_MEASURE_BENCH_ARGS"
        bench+=("${extra[@]}")
    elif [ "$QUICK" = 1 ]; then
        bench+=(--quick --layers NT-We)
    else
        bench+=(--batch "1,64" --samples 10)
    fi
    step bench-after 180 - -- "$EIE" "${bench[@]}" "${cuda_arg[@]}" --out "$W/after"
    if [ -x "$before" ]; then
        step bench-before 180 - -- "$before" "${bench[@]}" "${cuda_arg[@]}" --out "$W/before"
    else
        record bench-before skipped - 0.0 "no before binary at $before"
    fi

    local sweep_layers=${EIE_MEASURE_SWEEP_LAYERS:-Alex-6,VGG-6,NT-Wd} size=(--samples 5)
    # --quick: one sample of one run per kernel, no warm-up (it measures batch 1 only).
    [ "$QUICK" = 1 ] && sweep_layers=${EIE_MEASURE_SWEEP_LAYERS:-NT-We} && size=(--quick)
    [ -n "${EIE_MEASURE_SWEEP_ARGS:-}" ] && read -r -a size <<<"$EIE_MEASURE_SWEEP_ARGS"
    mkdir -p "$W/sweep"
    printf 'name\tschedule\tbatches\tlayers\n' >"$W/sweep/index.tsv"
    local setting schedule batches name
    while IFS= read -r setting; do
        schedule=${setting%@*}
        batches=${setting##*@}
        [ "$batches" = "$setting" ] && batches=1
        name="sweep-$(tr -c 'A-Za-z0-9.\n-' '_' <<<"$schedule")"
        printf '%s\t%s\t%s\t%s\n' "$name" "$schedule" "$batches" "$sweep_layers" >>"$W/sweep/index.tsv"
        step "$name" 60 - -- env EIE_GPU_SCHEDULE="$schedule" "$EIE" bench --gpu-only \
            --layers "$sweep_layers" --batch "$batches" "${size[@]}" "${cuda_arg[@]}" \
            --out "$W/sweep/$name"
    done < <(sweep_settings)

    # The summary (python3, standard library only), then the archive.
    local summary=benches/gpu_summary.py
    echo "finished	$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$W/run.tsv"
    BUDGET_S=$((BUDGET_S + 120)) # the summary runs whatever the steps left
    if ! SCALE=1 step summary 30 "$W/summary.md" -- python3 "$summary" "$W"; then
        {
            echo "# GPU measurement (benches/gpu_summary.py failed; raw steps below)"
            echo
            echo '```'
            cat "$W/devices.txt" 2>/dev/null
            echo
            column -t -s $'\t' "$W/steps.tsv" 2>/dev/null || cat "$W/steps.tsv"
            echo
            tail -20 "$W/logs/summary.log" 2>/dev/null
            echo '```'
        } >"$W/summary.md"
    fi
    cp "$W/summary.md" "$W/steps.tsv" "$out/" || die "cannot write to $out"
    # The demo's model file (2 MB) is generated from a seed: not worth carrying back.
    rm -f "$W"/demo/*.safetensors
    tar -czf "$out/results.tar.gz" -C "$W" . || die "cannot write $out/results.tar.gz"
    echo
    column -t -s $'\t' "$out/steps.tsv" 2>/dev/null || cat "$out/steps.tsv"
    echo "wrote $out: summary.md, steps.tsv, results.tar.gz ($(du -k "$out/results.tar.gz" | cut -f1) KiB);" \
        "$(($(($(now_us) - START_US)) / 1000000)) s in all"
    return "$FAILED"
}

case "${1:-}" in
prepare)
    shift
    prepare "$@"
    ;;
run) run ;;
*)
    echo "usage: bash benches/gpu_measure.sh prepare [BEFORE_COMMIT] | run" >&2
    exit 2
    ;;
esac
