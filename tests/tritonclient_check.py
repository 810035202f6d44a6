"""`eie serve` driven by Triton's own Python clients (tritonclient[http,grpc] from PyPI).

Usage: python tests/tritonclient_check.py EIE_BINARY [--load-seconds 10] [--out DIR]

Starts `eie serve` on the committed LeNet-300-100 model on 127.0.0.1 (ports chosen by the
system), then checks, with tritonclient's HTTP and gRPC clients:
  * server and model health and metadata;
  * inference over JSON, binary REST and gRPC, FP32, FP16 and UINT8, bit for bit against
    `eie run` on the same inputs;
  * each kind of bad request gets the protocol's error and the server still serves;
  * a bounded load run: 64 concurrent gRPC clients for --load-seconds on loopback, no errors,
    the server's resident memory bounded; p50 / p99 written to DIR/tritonclient-load.json;
  * SIGTERM: exit status 0.
Exits non-zero on the first failed check.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets/lenet/lenet-300-100.eie.safetensors"
IMAGES = ROOT / "assets/lenet/test-images.npy"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def start_server(eie, extra=()):
    proc = subprocess.Popen(
        [eie, "serve", "--model", f"lenet={MODEL}", "--http", "127.0.0.1:0",
         "--grpc", "127.0.0.1:0", "--backend", "cpu", *extra],
        stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        sys.stderr.write(line)
        m = re.match(r"eie serve: started, HTTP on (\S+), gRPC on (\S+) ", line)
        if m:
            # Keep draining the log so that the server never blocks on a full pipe.
            threading.Thread(target=lambda: [sys.stderr.write(l) for l in proc.stderr],
                             daemon=True).start()
            return proc, m.group(1), m.group(2)
    raise AssertionError(f"eie serve exited ({proc.wait()}) before it started")


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def eie_run(eie, x):
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/x.npy", x)
        subprocess.run([eie, "run", str(MODEL), "--input", f"{d}/x.npy", "--output",
                        f"{d}/y.npy"], check=True, capture_output=True)
        return np.load(f"{d}/y.npy")


def http_input(x, binary, dtype="FP32"):
    i = httpclient.InferInput("input", list(x.shape), dtype)
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def grpc_input(x, dtype="FP32"):
    i = grpcclient.InferInput("input", list(x.shape), dtype)
    i.set_data_from_numpy(x)
    return i


def expect_error(fn, status_word, what):
    try:
        fn()
    except InferenceServerException as e:
        text = f"{e.status()} {e.message()}"
        check(status_word in text, f"{what}: {text.splitlines()[0][:120]}")
        return
    raise AssertionError(f"{what}: no error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("eie")
    ap.add_argument("--load-seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "target"))
    a = ap.parse_args()

    images = (np.load(IMAGES)[:32].astype(np.float32) / 255.0).astype(np.float32)
    want = eie_run(a.eie, images)

    proc, http_addr, grpc_addr = start_server(a.eie)
    try:
        h = httpclient.InferenceServerClient(http_addr, concurrency=4)
        g = grpcclient.InferenceServerClient(grpc_addr)
        check(h.is_server_live() and h.is_server_ready(), "HTTP: server live and ready")
        check(g.is_server_live() and g.is_server_ready(), "gRPC: server live and ready")
        check(h.is_model_ready("lenet") and g.is_model_ready("lenet"), "model ready (both)")
        meta = h.get_model_metadata("lenet")
        check(meta["inputs"][0]["shape"] == [-1, 784] and meta["platform"] == "eie",
              "HTTP model metadata")
        gm = g.get_model_metadata("lenet")
        check(list(gm.outputs[0].shape) == [-1, 10] and gm.outputs[0].name == "output",
              "gRPC model metadata")
        check("binary_tensor_data" in h.get_server_metadata()["extensions"],
              "server metadata lists binary_tensor_data")

        out_bin = [httpclient.InferRequestedOutput("output", binary_data=True)]
        out_json = [httpclient.InferRequestedOutput("output", binary_data=False)]
        y = h.infer("lenet", [http_input(images, False)], outputs=out_json).as_numpy("output")
        check(np.array_equal(y.view(np.uint32), want.view(np.uint32)),
              "HTTP JSON: 32 images bit for bit as eie run")
        y = h.infer("lenet", [http_input(images, True)], outputs=out_bin).as_numpy("output")
        check(np.array_equal(y.view(np.uint32), want.view(np.uint32)),
              "HTTP binary: bit for bit as eie run")
        y = h.infer("lenet", [http_input(images[:3], True)]).as_numpy("output")
        check(np.array_equal(y, want[:3]), "HTTP binary, no outputs named: binary answer")
        y = g.infer("lenet", [grpc_input(images)]).as_numpy("output")
        check(np.array_equal(y.view(np.uint32), want.view(np.uint32)),
              "gRPC: bit for bit as eie run")
        half = images[:4].astype(np.float16)
        y = g.infer("lenet", [grpc_input(half, "FP16")]).as_numpy("output")
        check(np.array_equal(y, eie_run(a.eie, half.astype(np.float32))),
              "gRPC FP16 input = eie run on the widened values")
        u8 = np.load(IMAGES)[:4]
        y = h.infer("lenet", [http_input(u8, True, "UINT8")]).as_numpy("output")
        check(np.array_equal(y, eie_run(a.eie, u8.astype(np.float32))),
              "HTTP UINT8 input = eie run on the same integers")

        bad = images[:1].copy()
        bad[0, 5] = np.nan
        expect_error(lambda: h.infer("nope", [http_input(images[:1], True)]), "404",
                     "HTTP unknown model")
        expect_error(lambda: g.infer("nope", [grpc_input(images[:1])]), "NOT_FOUND",
                     "gRPC unknown model")
        expect_error(lambda: h.infer("lenet", [http_input(bad, True)]), "400", "HTTP NaN")
        expect_error(lambda: g.infer("lenet", [grpc_input(bad)]), "INVALID_ARGUMENT",
                     "gRPC NaN")
        expect_error(lambda: h.infer("lenet", [http_input(images[:1, :100], True)]), "400",
                     "HTTP wrong shape")
        expect_error(lambda: g.infer("lenet", [grpc_input(images[:1].astype(np.float64),
                                                          "FP64")]),
                     "INVALID_ARGUMENT", "gRPC wrong datatype")
        wrong = grpcclient.InferInput("pixels", [1, 784], "FP32")
        wrong.set_data_from_numpy(images[:1])
        expect_error(lambda: g.infer("lenet", [wrong]), "INVALID_ARGUMENT",
                     "gRPC wrong tensor name")
        big = np.zeros((65, 784), np.float32)
        expect_error(lambda: g.infer("lenet", [grpc_input(big)]), "INVALID_ARGUMENT",
                     "gRPC batch over the limit")
        y = g.infer("lenet", [grpc_input(images[:2])]).as_numpy("output")
        check(np.array_equal(y, want[:2]), "still serving after every bad request")

        # Bounded load: N clients, each its own gRPC channel, back to back.
        rss_before = rss_kib(proc.pid)
        latencies, errors = [], []
        lock = threading.Lock()
        stop_at = time.monotonic() + a.load_seconds

        def client(k):
            c = grpcclient.InferenceServerClient(grpc_addr)
            x = images[k % 32: k % 32 + 1]
            ref = want[k % 32: k % 32 + 1]
            mine = []
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    r = c.infer("lenet", [grpc_input(x)]).as_numpy("output")
                    if not np.array_equal(r, ref):
                        raise AssertionError("wrong answer under load")
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    with lock:
                        errors.append(repr(e))
                    continue
                mine.append(time.perf_counter() - t)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        rss_after = rss_kib(proc.pid)
        lat = np.array(latencies) * 1e3
        result = {
            "clients": a.clients, "seconds": round(elapsed, 2), "requests": len(latencies),
            "errors": len(errors), "requests_per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
            "server_rss_kib_before": rss_before, "server_rss_kib_after": rss_after,
            "client": "tritonclient.grpc (Python threads)",
        }
        print(json.dumps(result))
        Path(a.out).mkdir(parents=True, exist_ok=True)
        Path(a.out, "tritonclient-load.json").write_text(json.dumps(result, indent=1) + "\n")
        check(not errors, f"load: no errors ({errors[:3]})")
        check(len(latencies) > a.clients, f"load: {len(latencies)} requests answered")
        check(rss_after < rss_before + 256 * 1024,
              f"load: server memory bounded ({rss_before} -> {rss_after} KiB)")
        with urllib.request.urlopen(f"http://{http_addr}/metrics") as r:
            metrics = r.read().decode()
        check(f'eie_requests_total{{model="lenet",protocol="grpc"}}' in metrics,
              "metrics count the gRPC requests")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    check(code == 0, f"SIGTERM: exit status {code}")


if __name__ == "__main__":
    main()
