#!/usr/bin/env python3
"""Checks accuracy-aware compression on held-out MNIST images (numpy only).

`eie compress --calibration test-images.npy --labels test-labels.npy --max-accuracy-drop P`
searches on the 1000 committed test images. This script measures what the search's model does
on the other 9000 images of the MNIST test set, which the search never saw:

  1. reads the test set from the idx files (MD5-checked, as train.py does);
  2. checks that its first 1000 images are the committed ones;
  3. runs the compressed model on images 1000..9999 with `eie run` and the dense weights with
     numpy, and prints both top-1 accuracies, the drop and whether it keeps the budget.

Usage:
  python3 assets/lenet/search_check.py --mnist DIR --eie target/release/eie \
      --model /tmp/lenet-search.eie --budget 0.5
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train import read_idx, read_safetensors  # noqa: E402


def dense_forward(tensors, x):
    a = x
    for k in (1, 2, 3):
        a = a @ tensors[f"fc{k}.weight"].T + tensors[f"fc{k}.bias"]
        if k < 3:
            a = np.maximum(a, 0.0)
    return a


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", required=True, help="folder with the MNIST idx files")
    p.add_argument("--eie", required=True, help="the eie binary")
    p.add_argument("--model", required=True, help="the searched model file")
    p.add_argument("--budget", type=float, required=True, help="largest drop, in points")
    a = p.parse_args()

    images = read_idx(a.mnist, "t10k-images").reshape(-1, 784)
    labels = read_idx(a.mnist, "t10k-labels")
    committed = np.load(os.path.join(HERE, "test-images.npy"))
    if not np.array_equal(images[: len(committed)], committed):
        sys.exit("error: the committed test images are not the first images of the test set")
    held_x = images[len(committed):].astype(np.float32) / 255.0
    held_y = labels[len(committed):].astype(np.int64)

    dense = read_safetensors(os.path.join(HERE, "lenet-300-100.safetensors"))
    dense_acc = 100.0 * np.mean(np.argmax(dense_forward(dense, held_x), axis=1) == held_y)

    with tempfile.TemporaryDirectory() as tmp:
        x_path, y_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(x_path, held_x)
        subprocess.run(
            [a.eie, "run", a.model, "--input", x_path, "--output", y_path],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        out = np.load(y_path)
    comp_acc = 100.0 * np.mean(np.argmax(out, axis=1) == held_y)
    drop = dense_acc - comp_acc
    result = {
        "held_out_images": int(len(held_y)),
        "dense_accuracy_pct": round(float(dense_acc), 2),
        "compressed_accuracy_pct": round(float(comp_acc), 2),
        "drop_points": round(float(drop), 2),
        "budget_points": a.budget,
        "keeps_budget": bool(drop <= a.budget),
        "model_bytes": os.path.getsize(a.model),
        "dense_f32_bytes": int(sum(v.size * 4 for v in dense.values())),
    }
    result["ratio"] = round(result["dense_f32_bytes"] / result["model_bytes"], 1)
    print(json.dumps(result, indent=1))
    return 0 if result["keeps_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
