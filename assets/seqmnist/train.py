#!/usr/bin/env python3
"""Sequential MNIST: an LSTM reads each digit row by row (28 steps of 28 pixels), a
fully-connected layer classifies its last hidden state. Trained and pruned with numpy only.

Steps (Han, Mao, Dally, "Deep Compression", ICLR 2016; Han et al., "ESE", FPGA 2017):
  1. train the dense network (LSTM 28 -> 64, FC 64 -> 10, softmax cross-entropy, Adam);
  2. prune each matrix by magnitude to its density (DENSITY, in three steps, retraining with
     the mask after each, and longer after the last);
  3. write the pruned network in PyTorch's nn.LSTM naming (`lstm.weight_ih_l0`, ...) for
     `eie compress`, which shares the weights through per-matrix k-means codebooks.

The LSTM has one bias, stored as `lstm.bias_ih_l0` (PyTorch's two biases only ever appear as
their sum); `lstm.bias_hh_l0` is left out, which `eie compress` accepts.

Writes into --out (default: this script's folder):
  seqmnist-lstm.safetensors          dense f32 weights, PyTorch names
  seqmnist-lstm-pruned.safetensors   the pruned network, PyTorch names (zeros where pruned)
  results.json                       the recorded figures
Inputs are pixels / 255. Deterministic for a given seed, numpy version and BLAS.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST_MD5 = {
    "train-images": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels": "a25bea736e30d166cdddb491f175f624",
    "t10k-images": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels": "27ae3e4e09519cfbb04c329615203637",
}
HIDDEN = 64
STEPS = 28
DENSITY = {"lstm.weight_ih_l0": 0.25, "lstm.weight_hh_l0": 0.25, "fc.weight": 0.5}


def log(*a):
    print(*a, flush=True)


def read_idx(folder, stem, kind):
    for name in (f"{stem}.{kind}-ubyte", f"{stem}-{kind}-ubyte"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            data = open(path, "rb").read()
            if hashlib.md5(data).hexdigest() != MNIST_MD5[stem]:
                sys.exit(f"error: {path} has the wrong MD5")
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
            return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit(f"error: no {stem}.{kind}-ubyte in {folder}")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def init(rng):
    k = 1.0 / np.sqrt(HIDDEN)
    p = {
        "lstm.weight_ih_l0": rng.uniform(-k, k, (4 * HIDDEN, 28)),
        "lstm.weight_hh_l0": rng.uniform(-k, k, (4 * HIDDEN, HIDDEN)),
        "lstm.bias_ih_l0": np.zeros(4 * HIDDEN),
        "fc.weight": rng.uniform(-k, k, (10, HIDDEN)),
        "fc.bias": np.zeros(10),
    }
    p["lstm.bias_ih_l0"][HIDDEN : 2 * HIDDEN] = 1.0  # forget gate open at the start
    return {n: v.astype(np.float32) for n, v in p.items()}


def forward(p, x, keep=False):
    """x: [B, 28, 28] -> logits [B, 10]; with keep, the per-step values for backprop."""
    b = x.shape[0]
    h = np.zeros((b, HIDDEN), np.float32)
    c = np.zeros((b, HIDDEN), np.float32)
    wih, whh, bias = p["lstm.weight_ih_l0"], p["lstm.weight_hh_l0"], p["lstm.bias_ih_l0"]
    xs = x @ wih.T + bias  # the input part of every step as one product
    cache = []
    for t in range(STEPS):
        z = xs[:, t] + h @ whh.T
        i = sigmoid(z[:, :HIDDEN])
        f = sigmoid(z[:, HIDDEN : 2 * HIDDEN])
        g = np.tanh(z[:, 2 * HIDDEN : 3 * HIDDEN])
        o = sigmoid(z[:, 3 * HIDDEN :])
        c_prev, h_prev = c, h
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        if keep:
            cache.append((h_prev, c_prev, i, f, g, o, tc))
    logits = h @ p["fc.weight"].T + p["fc.bias"]
    return logits, h, cache


def grads(p, x, y):
    logits, h, cache = forward(p, x, keep=True)
    b = x.shape[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    loss = -np.log(prob[np.arange(b), y] + 1e-12).mean()
    dl = prob
    dl[np.arange(b), y] -= 1
    dl /= b
    g = {n: np.zeros_like(v) for n, v in p.items()}
    g["fc.weight"] = dl.T @ h
    g["fc.bias"] = dl.sum(0)
    dh = dl @ p["fc.weight"]
    dc = np.zeros_like(dh)
    whh = p["lstm.weight_hh_l0"]
    dz_all = np.zeros((b, STEPS, 4 * HIDDEN), np.float32)
    for t in reversed(range(STEPS)):
        h_prev, c_prev, i, f, gg, o, tc = cache[t]
        do = dh * tc
        dc = dc + dh * o * (1 - tc * tc)
        di, dgg, df = dc * gg, dc * i, dc * c_prev
        dc = dc * f
        dz = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dgg * (1 - gg * gg), do * o * (1 - o)], 1
        )
        dz_all[:, t] = dz
        g["lstm.weight_hh_l0"] += dz.T @ h_prev
        dh = dz @ whh
    g["lstm.weight_ih_l0"] = np.einsum("btk,btj->kj", dz_all, x)
    g["lstm.bias_ih_l0"] = dz_all.sum((0, 1))
    return loss, g


def accuracy(p, x, y, batch=1000):
    right = 0
    for s in range(0, len(x), batch):
        logits, _, _ = forward(p, x[s : s + batch])
        right += int((logits.argmax(1) == y[s : s + batch]).sum())
    return right / len(x)


def train(p, x, y, epochs, lr, rng, masks=None, batch=100, clip=5.0):
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(w) for n, w in p.items()}
    step = 0
    for ep in range(epochs):
        start = time.time()
        order = rng.permutation(len(x))
        total = 0.0
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            loss, g = grads(p, x[idx], y[idx])
            total += loss * len(idx)
            norm = np.sqrt(sum(float((gv * gv).sum()) for gv in g.values()))
            scale = min(1.0, clip / (norm + 1e-12))
            step += 1
            for n in p:
                gn = g[n] * scale
                m[n] = 0.9 * m[n] + 0.1 * gn
                v[n] = 0.999 * v[n] + 0.001 * gn * gn
                mh = m[n] / (1 - 0.9**step)
                vh = v[n] / (1 - 0.999**step)
                p[n] -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
                if masks and n in masks:
                    p[n] *= masks[n]
        log(f"  epoch {ep + 1}/{epochs}: loss {total / len(x):.4f} ({time.time() - start:.0f} s)")


def prune_masks(p, fraction_of_target):
    masks = {}
    for n, d in DENSITY.items():
        keep = int(round(p[n].size * (1 - (1 - d) * fraction_of_target)))
        flat = np.abs(p[n]).ravel()
        order = np.argsort(-flat, kind="stable")
        mask = np.zeros(flat.size, np.float32)
        mask[order[:keep]] = 1
        masks[n] = mask.reshape(p[n].shape)
    return masks


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for n in sorted(tensors):
        a = np.ascontiguousarray(tensors[n], dtype="<f4")
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True, help="folder with the four MNIST idx files")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--retrain-epochs", type=int, default=2)
    ap.add_argument("--final-epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x = read_idx(a.mnist, "train-images", "idx3").astype(np.float32) / 255
    y = read_idx(a.mnist, "train-labels", "idx1").astype(np.int64)
    xt = read_idx(a.mnist, "t10k-images", "idx3").astype(np.float32) / 255
    yt = read_idx(a.mnist, "t10k-labels", "idx1").astype(np.int64)
    p = init(rng)
    log(f"dense training, {a.epochs} epochs")
    train(p, x, y, a.epochs, 2e-3, rng)
    dense_acc = accuracy(p, xt, yt)
    log(f"dense: {100 * dense_acc:.2f} % on the 10k test set")
    save_safetensors(os.path.join(a.out, "seqmnist-lstm.safetensors"), p)
    results = {"dense_test_accuracy": dense_acc, "density": DENSITY, "pruning": []}
    for frac in (1 / 3, 2 / 3, 1.0):
        masks = prune_masks(p, frac)
        for n, mk in masks.items():
            p[n] *= mk
        before = accuracy(p, xt, yt)
        train(p, x, y, a.retrain_epochs, 1e-3, rng, masks)
        if frac == 1.0:
            train(p, x, y, a.final_epochs, 5e-4, rng, masks)
        after = accuracy(p, xt, yt)
        log(f"pruned to {frac:.0%} of the way: {100 * before:.2f} % -> retrained {100 * after:.2f} %")
        results["pruning"].append({"step": frac, "before": before, "after": after})
    results["pruned_test_accuracy"] = after
    save_safetensors(os.path.join(a.out, "seqmnist-lstm-pruned.safetensors"), p)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
