#!/usr/bin/env python3
"""The CPU benchmark beside its external anchors, in one run.

For each of the paper's nine layers (EIE Table III sizes, weight and activation densities; the
same table as src/paper.rs), this script times

* numpy's dense GEMV / GEMM (``W @ x``, ``W @ X``; numpy's BLAS, all cores), and
* scipy's CSR SpMV / SpMM (``A @ x``, ``A @ X``; scipy's ``csr_matvec(s)``, one thread),

on float32 weights of the layer's shape and density and ReLU-like inputs of its activation
density, then runs ``eie bench --cpu-only --layers <layer>`` right after on the same machine,
so that every CPU figure has numpy and scipy measured under the same conditions beside it.
Layers are interleaved (numpy/scipy, then eie, layer after layer) so a change in machine load
hits both sides alike.

Timing follows ``eie bench``: warm-up calls, then samples that each repeat the call for at least
10 ms and record the mean, rotating through four inputs; median and min-max over the samples.

Needs python3 with numpy and scipy (e.g. ``python3 -m venv v && v/bin/pip install numpy scipy``,
or Debian's python3-numpy python3-scipy) and a built ``eie`` (``cargo build --release``; with
``--features openblas`` its dense baseline runs through the system's OpenBLAS, as in the recorded
figures, else through the ``gemm`` crate); installs nothing itself. Not part of CI (it takes
minutes).

Usage (from the repository root):

    python3 benches/cpu_side_by_side.py [--eie target/release/eie] [--batch 1,64]
        [--samples 15] [--layers Alex-6,NT-We] [--out target/side-by-side]
        [--before OTHER_EIE]

``--before`` also runs another build of ``eie`` (e.g. an earlier commit's) on each layer in the
same run and adds its ``cpu-eie/f32`` and ``cpu-dense/f32`` beside the others.

Writes side_by_side.md (the tables) and side_by_side.json (every number) to --out, and prints
the tables.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp

# name, inputs (cols), outputs (rows), weight density, activation density: src/paper.rs.
PAPER_LAYERS = [
    ("Alex-6", 9216, 4096, 0.09, 0.351),
    ("Alex-7", 4096, 4096, 0.09, 0.353),
    ("Alex-8", 4096, 1000, 0.25, 0.375),
    ("VGG-6", 25088, 4096, 0.04, 0.183),
    ("VGG-7", 4096, 4096, 0.04, 0.375),
    ("VGG-8", 4096, 1000, 0.23, 0.411),
    ("NT-We", 4096, 600, 0.10, 1.0),
    ("NT-Wd", 600, 8791, 0.11, 1.0),
    ("NT-LSTM", 1201, 2400, 0.10, 1.0),
]

WARMUP = 2
ROTATE = 4
MIN_SAMPLE_S = 0.01


def stat(samples):
    s = sorted(samples)
    n = len(s)
    median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return {"median": median, "min": s[0], "max": s[-1], "n": n}


def time_call(call, inputs, samples):
    """Median and min-max of `samples` samples, µs per call (each sample >= MIN_SAMPLE_S)."""
    for k in range(WARMUP):
        call(inputs[k % len(inputs)])
    out, k = [], 0
    for _ in range(samples):
        start = time.perf_counter()
        calls = 0
        while True:
            call(inputs[k % len(inputs)])
            k += 1
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= MIN_SAMPLE_S:
                break
        out.append(elapsed * 1e6 / calls)
    return stat(out)


def layer_weights(rows, cols, density, rng):
    """A rows x cols float32 CSR matrix keeping each weight with probability `density`."""
    a = sp.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=rng)
    a.data = (a.data - 0.5).astype(np.float32)
    a.sort_indices()
    return a


def activations(n, density, rng):
    x = (1.0 - rng.random(n, dtype=np.float32)) * (rng.random(n) < density)
    return x.astype(np.float32)


def measure_python(layer, batches, samples, seed):
    name, cols, rows, wd, ad = layer
    rng = np.random.default_rng(seed)
    a = layer_weights(rows, cols, wd, rng)
    dense = np.ascontiguousarray(a.toarray())
    result = {}
    for b in batches:
        if b == 1:
            xs = [activations(cols, ad, rng) for _ in range(ROTATE)]
        else:
            # Column k of X is input k, as scipy's csr_matvecs and BLAS's GEMM take them.
            xs = [
                np.ascontiguousarray(activations(cols * b, ad, rng).reshape(cols, b))
                for _ in range(ROTATE)
            ]
        result[b] = {
            "numpy dense": time_call(lambda x: dense @ x, xs, samples),
            "scipy CSR": time_call(lambda x: a @ x, xs, samples),
        }
    return result


def measure_eie(eie, name, batches, samples, out_dir):
    d = os.path.join(out_dir, "eie-" + name)
    cmd = [
        eie, "bench", "--cpu-only", "--layers", name,
        "--batch", ",".join(map(str, batches)),
        "--samples", str(samples), "--out", d,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "bench.json")) as f:
        report = json.load(f)
    results = report["results"] if isinstance(report, dict) and "results" in report else report
    got, libraries = {}, {}
    for r in results:
        for k in r["kernels"]:
            wall = [t for t in k["timings"] if t["metric"] == "wall"]
            if wall:
                got.setdefault(r["batch"], {})[k["kernel"]] = wall[0]["us"]
            elif k.get("failure"):
                sys.exit(f"{name} batch {r['batch']}: {k['kernel']} failed: {k['failure']}")
            if k.get("library"):
                libraries[k["kernel"]] = k["library"]
    return got, libraries, " ".join(cmd)


def fmt(us):
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def cell(s):
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def geomean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eie", default="target/release/eie")
    p.add_argument("--batch", default="1,64")
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--layers", default="")
    p.add_argument("--seed", type=int, default=2016)
    p.add_argument("--out", default="target/side-by-side")
    p.add_argument("--before", default="")
    a = p.parse_args()
    batches = [int(b) for b in a.batch.split(",")]
    wanted = [n for n in a.layers.split(",") if n]
    layers = [l for l in PAPER_LAYERS if not wanted or l[0] in wanted]
    if not os.path.exists(a.eie):
        sys.exit(f"no eie binary at {a.eie}: run `cargo build --release` first")
    os.makedirs(a.out, exist_ok=True)

    cfg = np.show_config(mode="dicts") if hasattr(np.show_config, "__call__") else None
    try:
        blas = cfg["Build Dependencies"]["blas"]
        numpy_blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy
        numpy_blas = "unknown BLAS"
    env = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": f"{np.__version__} ({numpy_blas})",
        "scipy": f"{scipy.__version__} (csr_matvec / csr_matvecs, one thread)",
        "command": " ".join(sys.argv),
    }
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                env["machine"] = line.split(":", 1)[1].strip()
                break

    def loadavg():
        try:
            with open("/proc/loadavg") as f:
                return " ".join(f.read().split()[:3])
        except OSError:
            return "unknown"

    env["load average at start (1, 5, 15 min)"] = loadavg()
    rows = []
    libraries, before_libraries = {}, {}
    for i, layer in enumerate(layers):
        name = layer[0]
        print(f"[{i + 1}/{len(layers)}] {name}: numpy / scipy", file=sys.stderr)
        py = measure_python(layer, batches, a.samples, a.seed + i)
        print(f"[{i + 1}/{len(layers)}] {name}: eie bench", file=sys.stderr)
        ours, libs, cmd = measure_eie(a.eie, name, batches, a.samples, a.out)
        libraries.update(libs)
        env["eie command"] = cmd.replace(name, "<layer>")
        row = {"layer": name, "weight_density": layer[3], "python": py, "eie": ours}
        if a.before:
            print(f"[{i + 1}/{len(layers)}] {name}: eie bench (before)", file=sys.stderr)
            before, libs, _ = measure_eie(a.before, name, batches, a.samples, a.out + "/before")
            before_libraries.update(libs)
            for b, ks in before.items():
                for k in ["cpu-eie/f32", "cpu-dense/f32"]:
                    if k in ks:
                        ours.setdefault(b, {})[k + " (before)"] = ks[k]
        rows.append(row)

    env["load average at end (1, 5, 15 min)"] = loadavg()
    kernels = ["cpu-eie/f32", "cpu-eie/fixed16", "cpu-dense/f32", "cpu-csr/f32"]
    if a.before:
        kernels += ["cpu-eie/f32 (before)", "cpu-dense/f32 (before)"]
    md = [
        "- **machine**: "
        + f"{env['machine']}, {env['cpus']} CPUs; load average (1, 5, 15 min) "
        + f"{env['load average at start (1, 5, 15 min)']} at the start, "
        + f"{env['load average at end (1, 5, 15 min)']} at the end"
    ]
    md.append(f"- **numpy dense**: numpy {env['numpy']}, `W @ x` / `W @ X` (float32)")
    md.append(f"- **scipy CSR**: scipy {env['scipy']}, `A @ x` / `A @ X` (float32, int32 indices)")
    for k in kernels:
        if k in libraries:
            md.append(f"- **{k}**: {libraries[k]}")
    if a.before:
        md.append(
            f"- **(before)**: `{a.before}`, same command: "
            + "; ".join(f"`{k}`: {v}" for k, v in before_libraries.items()
                        if k in ("cpu-dense/f32", "cpu-eie/f32"))
            if before_libraries else f"- **(before)**: `{a.before}`, same command"
        )
    md.append(f"- **commands**: `{env['command']}`; per layer `{env['eie command']}`")
    summary = {}
    for b in batches:
        md.append(f"\n### Batch {b}: µs per call, median (min–max)\n")
        head = ["layer", "numpy dense", "scipy CSR"] + kernels
        head += ["eie/f32 ÷ numpy", "eie/f32 ÷ scipy", "eie/f32 ÷ cpu-dense"]
        md.append("| " + " | ".join(head) + " |")
        md.append("|" + "---|" * len(head))
        med = {k: [] for k in ["numpy dense", "scipy CSR"] + kernels}
        fastest = {k: [] for k in ["numpy dense", "scipy CSR"] + kernels}
        slower = []
        for r in rows:
            py, ours = r["python"][b], r["eie"].get(b, {})
            cells = [r["layer"], cell(py["numpy dense"]), cell(py["scipy CSR"])]
            for k in ["numpy dense", "scipy CSR"]:
                med[k].append(py[k]["median"])
                fastest[k].append(py[k]["min"])
            for k in kernels:
                cells.append(cell(ours[k]) if k in ours else "–")
                med[k].append(ours[k]["median"] if k in ours else float("nan"))
                fastest[k].append(ours[k]["min"] if k in ours else float("nan"))
            e = ours["cpu-eie/f32"]["median"]
            cells += [
                f"{py['numpy dense']['median'] / e:.2f}×",
                f"{py['scipy CSR']['median'] / e:.2f}×",
                f"{ours['cpu-dense/f32']['median'] / e:.2f}×",
            ]
            if r["weight_density"] <= 0.10 and (
                e > ours["cpu-dense/f32"]["median"] or e > py["numpy dense"]["median"]
            ):
                slower.append(r["layer"])
            md.append("| " + " | ".join(cells) + " |")
        g = {k: geomean(v) for k, v in med.items()}
        gmin = {k: geomean(v) for k, v in fastest.items()}
        md.append(
            "| geometric mean | "
            + " | ".join(fmt(g[k]) for k in ["numpy dense", "scipy CSR"] + kernels)
            + f" | {g['numpy dense'] / g['cpu-eie/f32']:.2f}×"
            + f" | {g['scipy CSR'] / g['cpu-eie/f32']:.2f}×"
            + f" | {g['cpu-dense/f32'] / g['cpu-eie/f32']:.2f}× |"
        )
        s = {
            "eie_over_numpy": g["numpy dense"] / g["cpu-eie/f32"],
            "eie_over_scipy": g["scipy CSR"] / g["cpu-eie/f32"],
            "eie_over_dense": g["cpu-dense/f32"] / g["cpu-eie/f32"],
            "fastest_eie_over_numpy": gmin["numpy dense"] / gmin["cpu-eie/f32"],
            "fastest_eie_over_scipy": gmin["scipy CSR"] / gmin["cpu-eie/f32"],
            "fastest_eie_over_dense": gmin["cpu-dense/f32"] / gmin["cpu-eie/f32"],
            "fixed16_over_f32": g["cpu-eie/fixed16"] / g["cpu-eie/f32"],
            "before_over_after": g.get("cpu-eie/f32 (before)", float("nan")) / g["cpu-eie/f32"],
            "slower_than_dense_at_density_le_10pct": slower,
        }
        summary[b] = s
        md.append(
            "| geometric mean of the fastest samples | "
            + " | ".join(fmt(gmin[k]) for k in ["numpy dense", "scipy CSR"] + kernels)
            + f" | {s['fastest_eie_over_numpy']:.2f}×"
            + f" | {s['fastest_eie_over_scipy']:.2f}×"
            + f" | {s['fastest_eie_over_dense']:.2f}× |"
        )
        md.append("")
        if b == 1:
            md.append(
                f"Targets (batch 1, geometric mean of medians; of the fastest samples in "
                f"brackets): ≥ 6× numpy dense: **{s['eie_over_numpy']:.2f}× — "
                f"{'met' if s['eie_over_numpy'] >= 6 else 'MISSED'}** "
                f"({s['fastest_eie_over_numpy']:.2f}×); "
                f"≥ 3× scipy CSR: **{s['eie_over_scipy']:.2f}× — "
                f"{'met' if s['eie_over_scipy'] >= 3 else 'MISSED'}** "
                f"({s['fastest_eie_over_scipy']:.2f}×)."
            )
        else:
            md.append(
                f"Target (batch {b}): no slower than the dense baselines (cpu-dense/f32 and numpy) "
                f"on any layer of weight density ≤ 10 %: **"
                + ("met" if not slower else "MISSED on " + ", ".join(slower))
                + "**."
            )
        md.append(
            f"fixed16 / f32 time (geometric mean): **{s['fixed16_over_f32']:.2f}** "
            f"({'no slower' if s['fixed16_over_f32'] <= 1 else 'slower'})."
        )
        if a.before:
            md.append(
                f"cpu-eie/f32 before / after (geometric mean): **{s['before_over_after']:.2f}×**."
            )
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "side_by_side.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "side_by_side.json"), "w") as f:
        json.dump({"env": env, "libraries": libraries, "rows": rows, "summary": summary}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
