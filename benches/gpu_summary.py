"""Summary of one `benches/gpu_measure.sh run` as markdown (python3 standard library only).

Reads the run's work folder: run.tsv, env.tsv, devices.json, steps.tsv, cuda.jsonl,
plan-b*.json, after/, before/ and sweep/*/ (each with the bench.json of `eie bench`), and
sweep/index.tsv. Prints the device, the steps table, and per batch and layer the median (min–max)
of every GPU kernel beside the latency model's prediction (`modelled_us` of `eie plan`, where the
build has it) and the cuBLAS / cuSPARSE figures, for before, after and each sweep setting.

usage: python3 benches/gpu_summary.py WORK_FOLDER > summary.md
"""
import json
import math
import os
import sys


def read_tsv(path, header=True):
    """Rows of a tab-separated file as dicts (header=True) or (key, value) pairs."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []
    if not header:
        return [tuple(line.split("\t", 1)) + ("",) * (1 - line.count("\t")) for line in lines]
    if not lines:
        return []
    keys = lines[0].split("\t")
    return [dict(zip(keys, line.split("\t"))) for line in lines[1:]]


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.lstrip().startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return rows


def fmt_us(us):
    """Three significant digits, as `eie bench` prints them."""
    if us is None or not isinstance(us, (int, float)) or not math.isfinite(us):
        return "n/a"
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def timing(kernel):
    """(metric, stat) of a kernel result: device time where measured, else wall time."""
    timings = kernel.get("timings") or []
    for metric in ("gpu", "wall"):
        for t in timings:
            if t.get("metric") == metric and isinstance(t.get("us"), dict):
                return metric, t["us"]
    return None, None


def cell(kernel):
    """A kernel's median (min–max) in µs, marked `wall` without device time."""
    if kernel is None:
        return "–"
    metric, us = timing(kernel)
    if us is None:
        failure = kernel.get("failure") or "not timed"
        return "FAILED: " + " ".join(str(failure).split())[:80].replace("|", "/")
    text = fmt_us(us.get("median"))
    if us.get("n", 0) > 1:
        text += f" ({fmt_us(us.get('min'))}–{fmt_us(us.get('max'))})"
    if metric == "wall":
        text += " wall"
    return text


def median(kernel):
    if kernel is None:
        return None
    _, us = timing(kernel)
    return us.get("median") if us else None


def find_modelled(row):
    """`modelled_us` of a plan row, at its top level or one level down."""
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("modelled_us"), (int, float)):
        return row["modelled_us"]
    for v in row.values():
        if isinstance(v, dict) and isinstance(v.get("modelled_us"), (int, float)):
            return v["modelled_us"]
    return None


class Run:
    """One `eie bench` output: results keyed by (layer, batch), kernels by name."""

    def __init__(self, label, folder, schedule=None):
        self.label = label
        self.schedule = schedule
        self.doc = read_json(os.path.join(folder, "bench.json"))
        self.results = {}
        for r in (self.doc or {}).get("results", []):
            self.results[(r.get("name"), r.get("batch"))] = r

    def kernel(self, layer, batch, name):
        r = self.results.get((layer, batch))
        if not r:
            return None
        for k in r.get("kernels", []):
            if k.get("kernel") == name:
                return k
        return None

    def has(self, layer, batch):
        return (layer, batch) in self.results


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    work = sys.argv[1]
    path = lambda *p: os.path.join(work, *p)
    run_info = dict(read_tsv(path("run.tsv"), header=False))
    env = dict(read_tsv(path("env.tsv"), header=False))
    steps = read_tsv(path("steps.tsv"))
    out = []
    w = out.append

    # The device.
    adapters = read_json(path("devices.json")) or []
    cuda_rows = read_jsonl(path("cuda.jsonl"))
    cuda_head = next((r for r in cuda_rows if "gpu" in r), None)
    name = adapters[0]["name"] if adapters else "no adapter"
    w(f"# GPU measurement on {name}")
    w("")
    w(f"- mode: {run_info.get('mode', '?')}, started {run_info.get('started', '?')}, "
      f"finished {run_info.get('finished', '?')}, host {run_info.get('host', '?')}")
    for key in ("after", "before", "prepared", "version"):
        if run_info.get(key):
            w(f"- {key}: {run_info[key]}")
    for a in adapters:
        w(f"- adapter: **{a.get('name')}** ({a.get('backend')}, {a.get('device_type')}), "
          f"driver {a.get('driver') or '?'}; timestamps {a.get('timestamps')}, "
          f"f16 {a.get('f16')}, subgroups {a.get('subgroups')} {a.get('subgroup_sizes')}, "
          f"workgroup memory {a.get('max_compute_workgroup_storage_size')} B")
    if not adapters:
        w("- adapter: none found (see logs/devices-probe.log in the archive)")
    if env.get("VK_DRIVER_FILES"):
        w(f"- VK_DRIVER_FILES={env['VK_DRIVER_FILES']}")
    if env.get("tried") and env.get("tried") != "nothing":
        w(f"- adapter search tried: {env['tried']}")
    if cuda_head:
        w(f"- CUDA: {cuda_head.get('gpu')}, PyTorch {cuda_head.get('torch')}")
    else:
        w("- CUDA: not measured (no CUDA / PyTorch, or the step failed)")

    # The steps.
    w("")
    w("## Steps")
    w("")
    w("| step | status | exit | seconds | note |")
    w("|---|---|---|---|---|")
    for s in steps:
        note = s.get("note", "").replace("|", "/")
        w(f"| {s.get('step')} | {s.get('status')} | {s.get('exit')} | {s.get('seconds')} | {note} |")

    # The runs: after, before, then the sweep in its order.
    runs = [Run("before", path("before")), Run("after", path("after"))]
    for s in read_tsv(path("sweep", "index.tsv")):
        runs.append(Run(s["schedule"], path("sweep", s["name"]), schedule=s["schedule"]))
    runs = [r for r in runs if r.doc]
    after = next((r for r in runs if r.label == "after"), None)
    sweep = [r for r in runs if r.schedule]

    # The latency model: plan-b*.json rows, else the plan the after bench recorded.
    modelled = {}
    for f in sorted(os.listdir(work)):
        if f.startswith("plan-b") and f.endswith(".json"):
            for row in (read_json(path(f)) or {}).get("layers", []):
                m = find_modelled(row)
                if m is not None:
                    modelled[(row.get("layer"), row.get("batch"), row.get("kernel"))] = m
    if after:
        for r in after.results.values():
            for row in r.get("plan") or []:
                m = find_modelled(row)
                key = (row.get("layer"), row.get("batch"), row.get("kernel"))
                if m is not None and key not in modelled:
                    modelled[key] = m
    cuda = {(r.get("layer"), r.get("batch")): r for r in cuda_rows if "layer" in r}

    keys = sorted({k for r in runs for k in r.results}, key=lambda k: (k[1], order(runs, k[0])))
    batches = sorted({b for _, b in keys})
    if not runs:
        w("")
        w("No bench produced a bench.json; see the steps above and the logs in results.tar.gz.")

    # AlexNet chained.
    chains = [(r.label, (r.doc or {}).get("alexnet_chain")) for r in runs]
    chains = [(label, c) for label, c in chains if c]
    if chains:
        w("")
        w("## AlexNet FC6 → FC7 → FC8 chained, batch 1")
        w("")
        w("| run | frames/s | latency µs median (min–max) | GPU µs per frame |")
        w("|---|---|---|---|")
        for label, c in chains:
            lat = c.get("latency_us") or {}
            gpu = c.get("gpu_us") or {}
            w(f"| {label} | {fmt_us(c.get('frames_per_s'))} | {fmt_us(lat.get('median'))} "
              f"({fmt_us(lat.get('min'))}–{fmt_us(lat.get('max'))}) | {fmt_us(gpu.get('median'))} |")

    # Geometric means of the EIE kernel per run, over the layers every compared run has.
    for b in batches:
        layers = [l for l, bb in keys if bb == b]
        lines = []
        for r in runs:
            common = [l for l in layers if r.has(l, b) and (after is None or after.has(l, b))]
            if not common:
                continue
            for kname in ("gpu-eie/f32",):
                g = geomean(median(r.kernel(l, b, kname)) for l in common)
                base = geomean(median(after.kernel(l, b, kname)) for l in common) if after else None
                cu = geomean((cuda.get((l, b)) or {}).get("cublas_f32_graph_us") for l in common)
                cs = geomean((cuda.get((l, b)) or {}).get("cusparse_csr_f32_graph_us") for l in common)
                lines.append((r.label, len(common), g, base, cu, cs))
        if lines:
            w("")
            w(f"## Batch {b}: gpu-eie/f32, geometric mean over layers (µs)")
            w("")
            w("| run | layers | gpu-eie/f32 | after on the same layers | run / after "
              "| cuBLAS f32 graph | cuSPARSE CSR f32 graph |")
            w("|---|---|---|---|---|---|---|")
            for label, n, g, base, cu, cs in lines:
                ratio = f"{g / base:.3f}" if g and base else "n/a"
                w(f"| {label} | {n} | {fmt_us(g)} | {fmt_us(base)} | {ratio} "
                  f"| {fmt_us(cu)} | {fmt_us(cs)} |")

    # Per batch and layer: every GPU kernel, every run.
    for b in batches:
        w("")
        w(f"## Batch {b}: µs per call, median (min–max), device time from timestamps")
        w("")
        w("Device time from timestamp queries (`wall`: host wall time where the adapter has no "
          "timestamps); `modelled µs`: this tree's latency model (`eie plan`), n/a where the "
          "build has none. Wall times, errors and the plan's bytes are in results.tar.gz.")
        for layer in [l for l, bb in keys if bb == b]:
            here = [r for r in runs if r.has(layer, b)]
            kernels = []
            for r in here:
                for k in r.results[(layer, b)].get("kernels", []):
                    if k.get("kernel") not in kernels:
                        kernels.append(k.get("kernel"))
            c = cuda.get((layer, b)) or {}
            refs = [("cuBLAS f32", "cublas_f32_us"), ("in a graph", "cublas_f32_graph_us"),
                    ("cuBLAS f16", "cublas_f16_us"), ("cuSPARSE CSR f32", "cusparse_csr_f32_us"),
                    ("in a graph", "cusparse_csr_f32_graph_us")]
            w("")
            if c:
                ref = ", ".join(f"{n} {fmt_us(c.get(k))}" for n, k in refs) + " µs"
            else:
                ref = "cuBLAS / cuSPARSE: n/a"
            w(f"### {layer}, batch {b} ({ref})")
            w("")
            w("| kernel | modelled µs | " + " | ".join(r.label for r in here) + " |")
            w("|---|---|" + "---|" * len(here))
            for k in kernels:
                m = modelled.get((layer, b, k))
                cells = [cell(r.kernel(layer, b, k)) for r in here]
                w(f"| {k} | {fmt_us(m) if m is not None else 'n/a'} | " + " | ".join(cells) + " |")

    if sweep:
        w("")
        w("Sweep columns: `eie bench` with EIE_GPU_SCHEDULE set to the column's value, on the "
          "sweep's layers and batches. The override reaches every EIE engine built with default "
          "options (gpu-eie-columns/f32 and gpu-eie-rows/f32 keep the walk they ask for in "
          "code); `modelled µs` is "
          "the default schedule's.")
    # UTF-8 whatever the locale (µ, –, →).
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))


def order(runs, layer):
    """Layers in the order the benches measured them."""
    for r in runs:
        names = [k[0] for k in r.results]
        if layer in names:
            return names.index(layer)
    return 0


if __name__ == "__main__":
    main()
