#!/usr/bin/env python3
"""LeNet-300-100 on MNIST, trained and compressed the Deep Compression way (numpy only).

Steps (Han, Mao, Dally, "Deep Compression", ICLR 2016):
  1. train the dense network (784 -> 300 -> 100 -> 10, ReLU, softmax cross-entropy);
  2. prune each layer by magnitude to its density in plan.json (in three steps, retraining
     with the mask after each);
  3. quantise each layer's kept weights to a codebook of 2^bits - 1 centroids (1-D k-means,
     linear initialisation; index 0 of the stored codebook stands for zero);
  4. retrain the centroids (the gradient of a centroid is the sum of its weights' gradients)
     and the biases.

Writes into --out (default: this script's folder):
  lenet-300-100.safetensors            dense f32 weights and biases (fc1..fc3, [out, in])
  lenet-300-100-quantised.safetensors  the compressed network as dense f32 tensors (zeros where
                                       pruned; each layer takes at most 2^bits - 1 distinct
                                       non-zero values, so `eie compress` re-encodes it exactly)
  test-images.npy, test-labels.npy     the first 1000 MNIST test images (uint8 [1000, 784],
                                       row-major 28x28, 0..255) and labels (uint8 [1000])
  results.json                         the recorded figures (errors, accuracies, codebooks)

Inputs to the network are pixels / 255 (no mean subtraction: blank pixels stay zero, which
EIE skips). Deterministic for a given seed, numpy version and BLAS.
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

# MD5 of the four uncompressed MNIST idx files (Y. LeCun, C. Cortes, C. Burges).
MNIST_MD5 = {
    "train-images": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels": "a25bea736e30d166cdddb491f175f624",
    "t10k-images": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels": "27ae3e4e09519cfbb04c329615203637",
}
LAYERS = ["fc1.weight", "fc2.weight", "fc3.weight"]
SIZES = [784, 300, 100, 10]
KEPT_TEST_IMAGES = 1000


def log(*a):
    print(*a, flush=True)


def find_idx(folder, stem, kind):
    """The idx file for `stem` (e.g. train-images) in `folder`, under either common name."""
    for name in (f"{stem}.{kind}-ubyte", f"{stem}-{kind}-ubyte"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    sys.exit(f"error: no {stem}.{kind}-ubyte (or {stem}-{kind}-ubyte) in {folder}")


def read_idx(folder, stem):
    kind = "idx3" if stem.endswith("images") else "idx1"
    path = find_idx(folder, stem, kind)
    with open(path, "rb") as f:
        data = f.read()
    md5 = hashlib.md5(data).hexdigest()
    if md5 != MNIST_MD5[stem]:
        sys.exit(f"error: {path} has MD5 {md5}, expected {MNIST_MD5[stem]}")
    magic, n = struct.unpack(">II", data[:8])
    if kind == "idx3":
        assert magic == 2051, path
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows * cols)
    assert magic == 2049, path
    return np.frombuffer(data, np.uint8, offset=8).reshape(n)


def read_safetensors(path):
    """Reads the f32 tensors of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}, expected F32"
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a : 8 + n + b], "<f4").reshape(t["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata):
    """Minimal safetensors writer: little-endian f32 tensors in name order."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Net:
    """Weights in PyTorch's convention: W[k] is [out, in], b[k] is [out]."""

    def __init__(self, rng):
        self.W = []
        self.b = []
        for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
            std = np.sqrt(2.0 / fan_in)
            self.W.append((rng.standard_normal((fan_out, fan_in)) * std).astype(np.float32))
            self.b.append(np.zeros(fan_out, np.float32))

    def forward(self, x):
        acts = [x]
        h = x
        for k in range(3):
            h = h @ self.W[k].T + self.b[k]
            if k < 2:
                h = np.maximum(h, 0)
            acts.append(h)
        return acts

    def grads(self, x, y):
        """Softmax cross-entropy gradients of the mean loss over the batch."""
        acts = self.forward(x)
        z = acts[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d = p
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        gW = [None] * 3
        gb = [None] * 3
        for k in (2, 1, 0):
            gW[k] = d.T @ acts[k]
            gb[k] = d.sum(axis=0)
            if k > 0:
                d = (d @ self.W[k]) * (acts[k] > 0)
        return gW, gb

    def predict(self, x, batch=2000):
        return np.concatenate([self.forward(x[i : i + batch])[-1].argmax(axis=1)
                               for i in range(0, len(x), batch)])


def error_pct(net, x, y):
    return round(100.0 * float(np.mean(net.predict(x) != y)), 4)


def train(net, x, y, epochs, lr0, rng, name, masks=None, quant=None, wd=1e-4, batch=128,
          mom=0.9, xt=None, yt=None):
    """SGD with momentum and a cosine learning-rate decay from lr0.

    masks: per-layer 0/1 arrays; pruned weights stay zero.
    quant: per-layer (codebook, index) pairs; the weights are codebook[index] and the
           centroids are trained instead of the weights (codebook[0] stays 0).
    """
    vW = [np.zeros_like(w) for w in net.W]
    vb = [np.zeros_like(b) for b in net.b]
    vc = [np.zeros_like(q[0]) for q in quant] if quant else None
    steps = epochs * ((len(x) + batch - 1) // batch)
    step = 0
    for epoch in range(epochs):
        t = time.time()
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            lr = lr0 * 0.5 * (1 + np.cos(np.pi * step / steps))
            step += 1
            gW, gb = net.grads(x[idx], y[idx])
            for k in range(3):
                vb[k] = mom * vb[k] + gb[k]
                net.b[k] -= lr * vb[k]
                if quant:
                    cb, ci = quant[k]
                    g = np.bincount(ci.ravel(), weights=gW[k].ravel(), minlength=len(cb))
                    g[0] = 0.0
                    vc[k] = mom * vc[k] + g.astype(np.float32)
                    cb -= lr * vc[k]
                    net.W[k] = cb[ci]
                    continue
                g = gW[k] + wd * net.W[k]
                if masks:
                    g *= masks[k]
                vW[k] = mom * vW[k] + g
                net.W[k] -= lr * vW[k]
        msg = f"{name} epoch {epoch + 1}/{epochs}: {time.time() - t:.1f} s"
        if xt is not None:
            msg += f", test error {error_pct(net, xt, yt):.2f} %"
        log(msg)


def keep_mask(w, density):
    """Keeps exactly round(density * n) weights, the largest by magnitude, ties to the lower
    index (the same rule as `eie compress --density`)."""
    n = w.size
    keep = int(np.floor(density * n + 0.5))
    flat = np.abs(w).ravel()
    order = np.lexsort((np.arange(n), -flat))  # larger first, then lower index
    mask = np.zeros(n, np.float32)
    mask[order[:keep]] = 1
    return mask.reshape(w.shape)


def kmeans_1d(values, k, iterations=100):
    """Lloyd's algorithm on sorted values, centroids initialised linearly between min and max."""
    s = np.sort(values.astype(np.float64))
    c = np.linspace(s[0], s[-1], k)
    ends = None
    for _ in range(iterations):
        bounds = 0.5 * (c[:-1] + c[1:])
        new_ends = np.append(np.searchsorted(s, bounds, side="right"), len(s))
        starts = np.concatenate(([0], new_ends[:-1]))
        for i in range(k):
            if new_ends[i] > starts[i]:
                c[i] = s[starts[i] : new_ends[i]].mean()
        if ends is not None and np.array_equal(ends, new_ends):
            break
        ends = new_ends
    return c.astype(np.float32)


def quantise(w, mask, bits):
    """(codebook, index): codebook[0] = 0, codebook[1:] the k-means centroids of the kept
    weights; index 0 where pruned, else the nearest centroid."""
    kept = w[mask > 0]
    c = kmeans_1d(kept, (1 << bits) - 1)
    bounds = 0.5 * (c[:-1] + c[1:])
    ci = (np.searchsorted(bounds, w, side="left") + 1) * (mask > 0)
    return np.concatenate(([0.0], c)).astype(np.float32), ci.astype(np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", required=True, help="folder with the four MNIST idx files")
    ap.add_argument("--out", default=HERE, help="output folder (default: this folder)")
    ap.add_argument("--plan", default=os.path.join(HERE, "plan.json"),
                    help="per-layer density and bits (the file `eie compress --plan` reads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dense", help="skip dense training: start from these dense weights "
                    "(a lenet-300-100.safetensors this script wrote with the same seed)")
    ap.add_argument("--dense-epochs", type=int, default=12)
    ap.add_argument("--prune-epochs", type=int, default=16)
    ap.add_argument("--quant-epochs", type=int, default=4)
    ap.add_argument("--prune-lr", type=float, default=0.05)
    args = ap.parse_args()
    t0 = time.time()

    with open(args.plan) as f:
        plan = json.load(f)["layers"]
    density = [plan[n]["density"] for n in LAYERS]
    bits = [plan[n]["bits"] for n in LAYERS]

    xtr = read_idx(args.mnist, "train-images").astype(np.float32) / 255
    ytr = read_idx(args.mnist, "train-labels").astype(np.int64)
    test_u8 = read_idx(args.mnist, "t10k-images")
    xte = test_u8.astype(np.float32) / 255
    yte = read_idx(args.mnist, "t10k-labels").astype(np.int64)
    log(f"MNIST: {len(xtr)} training, {len(xte)} test images; MD5s match")

    # One generator per phase, so that --dense reproduces the later phases exactly.
    rng = np.random.default_rng([args.seed, 0])
    net = Net(rng)

    # 1. Dense training.
    if args.dense:
        t = read_safetensors(args.dense)
        net.W = [t[f"fc{k + 1}.weight"] for k in range(3)]
        net.b = [t[f"fc{k + 1}.bias"] for k in range(3)]
        log(f"dense weights from {args.dense}")
    else:
        train(net, xtr, ytr, args.dense_epochs, 0.05, rng, "dense", xt=xte, yt=yte)
    dense = Net.__new__(Net)
    dense.W = [w.copy() for w in net.W]
    dense.b = [b.copy() for b in net.b]
    dense_err = error_pct(dense, xte, yte)
    log(f"dense test error: {dense_err:.2f} %")

    # 2. Pruning in three steps towards each layer's density, retraining with the mask.
    rng = np.random.default_rng([args.seed, 1])
    masks = None
    for step in (1, 2, 3):
        masks = [keep_mask(net.W[k], density[k] ** (step / 3)) for k in range(3)]
        net.W = [w * m for w, m in zip(net.W, masks)]
        log(f"pruned to {', '.join(f'{100 * m.mean():.1f} %' for m in masks)}: "
            f"test error {error_pct(net, xte, yte):.2f} %")
        epochs = args.prune_epochs if step == 3 else max(1, args.prune_epochs // 4)
        train(net, xtr, ytr, epochs, args.prune_lr, rng, f"retrain (prune step {step})", masks=masks,
              xt=xte, yt=yte)
    pruned_err = error_pct(net, xte, yte)

    # 3. Weight sharing.
    quant = [quantise(net.W[k], masks[k], bits[k]) for k in range(3)]
    net.W = [cb[ci] for cb, ci in quant]
    log(f"quantised to {bits} bits: test error {error_pct(net, xte, yte):.2f} %")

    # 4. Centroid (and bias) retraining.
    rng = np.random.default_rng([args.seed, 2])
    train(net, xtr, ytr, args.quant_epochs, 0.0005, rng, "retrain centroids", quant=quant,
          xt=xte, yt=yte)
    net.W = [cb[ci] for cb, ci in quant]
    comp_err = error_pct(net, xte, yte)

    layers = {}
    for k, name in enumerate(LAYERS):
        cb, ci = quant[k]
        w = net.W[k]
        nz = w[w != 0]
        assert nz.size == int(masks[k].sum()), "a centroid reached exactly zero"
        distinct = np.unique(nz)
        assert distinct.size <= (1 << bits[k]) - 1
        layers[name] = {
            "shape": list(w.shape),
            "density": density[k],
            "bits": bits[k],
            "nonzeros": int(nz.size),
            "centroids": [float(v) for v in distinct],
        }

    os.makedirs(args.out, exist_ok=True)
    meta = {"model": "LeNet-300-100", "seed": str(args.seed)}

    def tensors(n):
        return {f"fc{k + 1}.{kind}": (n.W if kind == "weight" else n.b)[k]
                for k in range(3) for kind in ("weight", "bias")}

    write_safetensors(os.path.join(args.out, "lenet-300-100.safetensors"), tensors(dense), meta)
    write_safetensors(os.path.join(args.out, "lenet-300-100-quantised.safetensors"),
                      tensors(net), meta)
    np.save(os.path.join(args.out, "test-images.npy"), test_u8[:KEPT_TEST_IMAGES])
    np.save(os.path.join(args.out, "test-labels.npy"), yte[:KEPT_TEST_IMAGES].astype(np.uint8))

    def correct(n, count):
        return int(np.sum(n.predict(xte[:count]) == yte[:count]))

    results = {
        "seed": args.seed,
        "numpy": np.__version__,
        "epochs": {"dense": args.dense_epochs, "prune": args.prune_epochs,
                   "quant": args.quant_epochs},
        "test_error_10k_pct": {"dense": dense_err, "pruned": pruned_err,
                               "compressed": comp_err},
        "correct_of_first_200": {"dense": correct(dense, 200), "compressed": correct(net, 200)},
        "correct_of_first_1000": {"dense": correct(dense, 1000),
                                  "compressed": correct(net, 1000)},
        "layers": layers,
        "mnist_md5": MNIST_MD5,
        "seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    log(json.dumps({k: results[k] for k in
                    ("test_error_10k_pct", "correct_of_first_200", "correct_of_first_1000",
                     "seconds")}))


if __name__ == "__main__":
    main()
