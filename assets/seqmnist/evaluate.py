#!/usr/bin/env python3
"""Top-1 accuracy of the compressed sequential-MNIST model on the 10k MNIST test set, through
the `eie` binary (`eie run --last`, f32 and fixed16), recorded into results.json.

Usage: evaluate.py --mnist DIR --eie PATH/TO/eie [--model FILE]
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np

import train

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--eie", required=True, help="the eie binary")
    ap.add_argument("--model", default=os.path.join(HERE, "seqmnist-lstm.eie.safetensors"))
    a = ap.parse_args()
    xt = train.read_idx(a.mnist, "t10k-images", "idx3").astype(np.float32) / 255
    yt = train.read_idx(a.mnist, "t10k-labels", "idx1").astype(np.int64)
    results_path = os.path.join(HERE, "results.json")
    results = json.load(open(results_path))
    with tempfile.TemporaryDirectory() as d:
        x = os.path.join(d, "x.npy")
        np.save(x, xt)  # [10000, 28, 28]: 10000 sequences of 28 rows
        for precision in ("f32", "fixed16"):
            y = os.path.join(d, "y.npy")
            flags = ["--fixed16"] if precision == "fixed16" else []
            subprocess.run(
                [a.eie, "run", a.model, "--input", x, "--output", y, "--last"] + flags,
                check=True,
            )
            pred = np.load(y).argmax(1)
            acc = float((pred == yt).mean())
            first = int((pred[:1000] == yt[:1000]).sum())
            print(f"eie {precision}: {100 * acc:.2f} % on the 10k test set, {first}/1000 on the first 1000")
            results[f"eie_{precision}_test_accuracy"] = acc
            results[f"eie_{precision}_correct_first_1000"] = first
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
