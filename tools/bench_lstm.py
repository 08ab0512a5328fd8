#!/usr/bin/python3
"""Time one LSTM-layer training step in PyTorch (nn.LSTM) and in tapegrad (bench/bench_lstm.cpp),
alternating runs, and print the medians.

The step is the same on both sides (float32): forward, loss, zero_grad, backward, Adam(lr 1e-3).
  adding   nn.LSTM(2, 64, batch_first=True), B = 32, T = 50; Linear(64, 1) on h_T, MSE
  char-lm  nn.LSTM(65, 128, batch_first=True) on one-hot input, B = 32, T = 32;
           Linear(128, 65) on every step, mean cross-entropy
PyTorch runs with torch.set_num_threads(1) and (2); tapegrad's OpenBLAS uses the threads
OPENBLAS_NUM_THREADS allows (1 and 2 are run too).

Usage:  /usr/bin/python3 tools/bench_lstm.py [--bench build/bench/bench_lstm] [--repeats 3]
                                              [--steps 50]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {"adding": dict(I=2, H=64, B=32, T=50, out=1, char_lm=False),
           "char-lm": dict(I=65, H=128, B=32, T=32, out=65, char_lm=True)}


def torch_step_ms(cfg, threads, steps, warmup=5):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = nn.LSTM(cfg["I"], cfg["H"], batch_first=True)
    head = nn.Linear(cfg["H"], cfg["out"])
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    B, T = cfg["B"], cfg["T"]
    if cfg["char_lm"]:
        x = F.one_hot(torch.randint(0, cfg["I"], (B, T)), cfg["I"]).float()
        y = torch.randint(0, cfg["out"], (B * T,))
    else:
        x = torch.rand(B, T, cfg["I"])
        y = torch.rand(B, 1) * 2

    def step():
        out, _ = lstm(x)
        if cfg["char_lm"]:
            loss = F.cross_entropy(head(out).reshape(B * T, cfg["out"]), y)
        else:
            loss = F.mse_loss(head(out[:, -1]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1e3


def tapegrad_step_ms(bench, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([bench, "--benchmark_format=json", "--benchmark_min_time=1"],
                         env=env, check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        name = "adding" if b["name"].endswith("/0/real_time") else "char-lm"
        res[name] = b["real_time"]  # ms (the benchmark's unit)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="path of the bench_lstm program (omit: PyTorch only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    times = {}
    for r in range(a.repeats):  # alternate: torch 1, torch 2, tapegrad 1, tapegrad 2, ...
        for threads in (1, 2):
            for name, cfg in CONFIGS.items():
                times.setdefault((name, f"PyTorch {torch.__version__} nn.LSTM", threads), []).append(
                    torch_step_ms(cfg, threads, a.steps))
            if a.bench:
                for name, ms in tapegrad_step_ms(a.bench, threads).items():
                    times.setdefault((name, "tapegrad LSTM (composed)", threads), []).append(ms)
        print(f"repeat {r + 1}/{a.repeats} done", file=sys.stderr)
    print(f"| config | implementation | threads | ms/step (median of {a.repeats}) | all runs |")
    print("|---|---|---|---|---|")
    for (name, impl, threads), v in sorted(times.items()):
        print(f"| {name} | {impl} | {threads} | {statistics.median(v):.2f} | "
              f"{', '.join(f'{x:.2f}' for x in v)} |")


if __name__ == "__main__":
    main()
