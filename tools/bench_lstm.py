#!/usr/bin/python3
"""Time one LSTM-layer training step in PyTorch (nn.LSTM) and in tapegrad (bench/bench_lstm.cpp),
alternating runs, and print the medians.

The step is the same on both sides (float32): forward, loss, zero_grad, backward, Adam(lr 1e-3).
  adding   nn.LSTM(2, 64, batch_first=True), B = 32, T = 50; Linear(64, 1) on h_T, MSE
  char-lm  nn.LSTM(65, 128, batch_first=True) on one-hot input, B = 32, T = 32;
           Linear(128, 65) on every step, mean cross-entropy
  char-lm-512  the same with nn.LSTM(65, 512), Linear(512, 65)
PyTorch runs with torch.set_num_threads(1) and (2); tapegrad's OpenBLAS uses the threads
OPENBLAS_NUM_THREADS allows (1 and 2 are run too).

Usage:  /usr/bin/python3 tools/bench_lstm.py [--bench build-bench/bench/bench_lstm] [--repeats 3]
                                              [--steps 50] [--configs adding,char-lm,char-lm-512]
                                              [--threads 1,2] [--json]
--json prints one JSON object per measurement instead of the table ({"config", "impl",
"threads", "ms_per_step", "steps"}); tools/bench_vs_torch.py --sections lstm runs the PyTorch
side this way, one config and thread setting per process, alternated with bench_lstm.
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
           "char-lm": dict(I=65, H=128, B=32, T=32, out=65, char_lm=True),
           "char-lm-512": dict(I=65, H=512, B=32, T=32, out=65, char_lm=True)}
BENCH_INDEX = {name: i for i, name in enumerate(CONFIGS)}  # BM_LstmTrainStep/<index> in bench_lstm.cpp


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


def tapegrad_step_ms(bench, threads, configs=tuple(CONFIGS)):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    filt = "BM_LstmTrainStep/(" + "|".join(str(BENCH_INDEX[c]) for c in configs) + ")/"
    out = subprocess.run([bench, "--benchmark_format=json", "--benchmark_min_time=1", f"--benchmark_filter={filt}"],
                         env=env, check=True, capture_output=True, text=True).stdout
    by_index = {str(i): name for name, i in BENCH_INDEX.items()}
    res = {}
    for b in json.loads(out)["benchmarks"]:
        res[by_index[b["name"].split("/")[1]]] = b["real_time"]  # ms (the benchmark's unit)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="path of the bench_lstm program (omit: PyTorch only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread settings")
    ap.add_argument("--json", action="store_true", help="one JSON object per measurement, no table")
    a = ap.parse_args()
    configs = a.configs.split(",")
    for name in configs:
        if name not in CONFIGS:
            sys.exit(f"error: unknown config {name!r} (known: {', '.join(CONFIGS)})")
    thread_list = [int(t) for t in a.threads.split(",")]
    times = {}
    for r in range(a.repeats):  # alternate: torch 1, torch 2, tapegrad 1, tapegrad 2, ...
        for threads in thread_list:
            for name in configs:
                ms = torch_step_ms(CONFIGS[name], threads, a.steps)
                times.setdefault((name, f"PyTorch {torch.__version__} nn.LSTM", threads), []).append(ms)
                if a.json:
                    print(json.dumps({"config": name, "impl": "torch", "threads": threads, "ms_per_step": ms,
                                      "steps": a.steps}), flush=True)
            if a.bench:
                for name, ms in tapegrad_step_ms(a.bench, threads, configs).items():
                    times.setdefault((name, "tapegrad LSTM (composed)", threads), []).append(ms)
                    if a.json:
                        print(json.dumps({"config": name, "impl": "tapegrad", "threads": threads,
                                          "ms_per_step": ms}), flush=True)
        print(f"repeat {r + 1}/{a.repeats} done", file=sys.stderr)
    if a.json:
        return
    print(f"| config | implementation | threads | ms/step (median of {a.repeats}) | all runs |")
    print("|---|---|---|---|---|")
    for (name, impl, threads), v in sorted(times.items()):
        print(f"| {name} | {impl} | {threads} | {statistics.median(v):.2f} | "
              f"{', '.join(f'{x:.2f}' for x in v)} |")


if __name__ == "__main__":
    main()
