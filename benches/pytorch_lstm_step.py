#!/usr/bin/env python3
"""PyTorch's CPU LSTM at batch 1, the anchor beside ``examples/lstm_step.rs``.

Times, per step, on the two models of that example (dense f32 weights of the same shapes;
a dense product's time does not depend on the values):

* NT-LSTM as a real cell: hidden 600, input 600;
* assets/seqmnist's shape: LSTM of 64 units over 28 inputs, then a 10-way linear classifier at
  every step,

in two ways a PyTorch user would run them:

* one step per call (the online case ``SequenceEngine::stream`` serves), through
  ``nn.LSTMCell`` and through ``nn.LSTM`` on a one-step sequence with the state carried;
* ``nn.LSTM`` over a whole sequence of 100 steps in one call (PyTorch computes ``W_ih x_t`` for
  all steps as one matrix product ahead of the recurrence), reported per step.

Timing follows the example: warm-up, then samples that each repeat the call for at least 20 ms;
median (min-max) over the samples, µs per step, under ``torch.inference_mode()``, with PyTorch's
default thread count and again with one thread (small products can run faster on one).

Needs python3 with torch (``python3 -m venv v && v/bin/pip install torch``); not part of CI.

Usage: ``python3 benches/pytorch_lstm_step.py [--samples 15]``
"""

import argparse
import os
import time

import torch


def measure(samples, run):
    """Median, min and max µs per call of ``run(k)`` (which makes k calls)."""
    k = 1
    while True:
        t = time.perf_counter()
        run(k)
        if time.perf_counter() - t >= 0.02:
            break
        k *= 2
    v = []
    for _ in range(samples):
        t = time.perf_counter()
        run(k)
        v.append((time.perf_counter() - t) * 1e6 / k)
    v.sort()
    return v[len(v) // 2], v[0], v[-1]


def report(name, inputs, hidden, head, samples):
    torch.manual_seed(2016)
    cell = torch.nn.LSTMCell(inputs, hidden)
    lstm = torch.nn.LSTM(inputs, hidden)
    lstm.load_state_dict(
        {
            "weight_ih_l0": cell.weight_ih,
            "weight_hh_l0": cell.weight_hh,
            "bias_ih_l0": cell.bias_ih,
            "bias_hh_l0": cell.bias_hh,
        }
    )
    fc = torch.nn.Linear(hidden, head) if head else None
    xs = torch.rand(100, 1, inputs)
    with torch.inference_mode():
        state = [torch.zeros(1, hidden), torch.zeros(1, hidden)]
        t = [0]

        def step(k):
            for _ in range(k):
                h, c = cell(xs[t[0] % 100], (state[0], state[1]))
                state[0], state[1] = h, c
                if fc is not None:
                    fc(h)
                t[0] += 1

        threads = torch.get_num_threads()
        med, lo, hi = measure(samples, step)
        print(
            f"| {name} | nn.LSTMCell, one step per call, {threads} threads | "
            f"{med:.1f} ({lo:.1f}–{hi:.1f}) |"
        )

        lstm_state = [torch.zeros(1, 1, hidden), torch.zeros(1, 1, hidden)]

        def lstm_step(k):
            for _ in range(k):
                y, (h, c) = lstm(xs[t[0] % 100 : t[0] % 100 + 1], (lstm_state[0], lstm_state[1]))
                lstm_state[0], lstm_state[1] = h, c
                if fc is not None:
                    fc(y)
                t[0] += 1

        med, lo, hi = measure(samples, lstm_step)
        print(
            f"| {name} | nn.LSTM, one step per call (state carried), {threads} threads | "
            f"{med:.1f} ({lo:.1f}–{hi:.1f}) |"
        )

        def sequence(k):
            for _ in range(k):
                y, _ = lstm(xs)
                if fc is not None:
                    fc(y)

        med, lo, hi = measure(samples, sequence)
        print(
            f"| {name} | nn.LSTM, 100 steps in one call (per step), {threads} threads | "
            f"{med / 100:.1f} ({lo / 100:.1f}–{hi / 100:.1f}) |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=15)
    a = ap.parse_args()
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}, load average {load}"
    )
    print("| model | PyTorch | µs per step |")
    print("|---|---|---|")
    for threads in [torch.get_num_threads(), 1]:
        torch.set_num_threads(threads)
        report("NT-LSTM cell (600 hidden, 600 inputs)", 600, 600, 0, a.samples)
        report("seqmnist shape (64 hidden, 28 inputs, 10-way head)", 28, 64, 10, a.samples)


if __name__ == "__main__":
    main()
