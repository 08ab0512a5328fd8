#!/usr/bin/python3
"""tapegrad against PyTorch on this machine, side by side, and the engine's own micro-benchmarks.

Sections (--sections, comma-separated; default: all of them, in this order):
  fused      char_gru train (the fused GRU, char_gru's default) vs tools/torch_char_gru.py (nn.GRU),
             configs S, M, L below: one-hot inputs, GRU(V -> H) + Linear(H -> V), mean
             cross-entropy, Adam, clip_grad_norm 5, truncated BPTT, float32, on the same synthetic
             text (V distinct characters, uniform random, fixed seed). Metric: chars/s of the
             training loop (both tools time only that) and peak RSS (each tool's ru_maxrss).
  composed   the same with `char_gru train --composed` (every gate op on the tape). With `fused`
             also selected both tapegrad variants run in the same alternated rounds as the same
             PyTorch runs (one set of PyTorch runs serves both comparisons).
  sample     char_gru sample --json (the fused GRU fed one character per forward, the state
             carried) vs tools/torch_char_gru_sample.py (nn.GRU, the same loop), configs as
             selected with --configs, from a checkpoint `char_gru train --steps 1` writes (both
             load it): 10 samples of --steps sample=2000 characters in all, temperature 1.
             Metric: characters drawn per second of the sampling loop. No target (issue 13
             names none); the ratio is reported.
  lstm       one training step of the LSTM layer: bench/bench_lstm.cpp (BM_LstmTrainStep/<i>,
             OpenBLAS on 1 and on 2 threads) vs tools/bench_lstm.py's PyTorch step (nn.LSTM):
             adding (LSTM(2 -> 64), B 32, T 50), char-lm (LSTM(65 -> 128), B 32, T 32) and
             char-lm-512 (LSTM(65 -> 512), B 32, T 32). Metric: ms per step; tapegrad's better
             OpenBLAS setting against PyTorch's better thread setting.
  mlp        a user-written MLP: examples/mlp_spirals --json vs tools/torch_mlp_spirals.py
             (same data recipe, sizes, Adam + cosine schedule, batches of 64). Metric: seconds
             of the training loop for --steps mlp=EPOCHS epochs; test accuracy is recorded.
  attention  examples/date_translation --json (bidirectional GRU encoder, attention, LSTMCell
             decoder) vs tools/torch_date_translation.py. Metrics: seconds of the training loop
             and peak RSS of the child process (ru_maxrss from wait4, the same for both tools).
  ad         bench/ad_suite: gradient time / function time per case (no PyTorch side).
  primitives bench/primitives vs tools/torch_primitives.py: each primitive op a model is written
             with (elementwise, broadcasting, reductions, softmax family, losses, indexing,
             shape ops, matmul, a composed layer norm; 256 x 1024 float32 mostly), forward +
             backward one op at a time, each process timing every case (--ad-repeats batches of
             >= 20 ms, the median batch). Metric: microseconds per call; the ratio per op is the
             better PyTorch median / tapegrad's (> 1: tapegrad faster). No target (issue 13 names
             none per op); the ops where tapegrad is slower than PyTorch are listed. With
             --primitives-baseline DIR (another build with bench/primitives, e.g. of an older
             commit) that build runs in the same alternated rounds, and each op's speed-up over
             it is reported too.
  ops        bench/bench_ops with OPENBLAS_NUM_THREADS=1: tape overhead per recorded small op
             (BM_TapeAdd64 minus BM_RawAdd64, ns per op) and a 128x128 matmul forward + backward
             through the tape against the same three raw sgemm calls (BM_TapeMatmul128 /
             BM_RawSgemm128x3, real time). Each benchmark is its own process, rotated per round,
             and runs OPS_REPETITIONS repetitions: a round keeps the fastest (the least disturbed
             by other work on the machine; every repetition is in the JSON), the medians of those
             over the rounds are compared.
  gradcheck  the float64 gradcheck of a GRU LM (V=10, H=16, B=2, T=8, 1,546 inputs):
             bench/gradcheck_gru_lm (fused and composed GRU) vs tools/torch_gradcheck_gru_lm.py.
  ceiling    bench/sgemm_ceiling.cpp (OpenBLAS sgemm 1024^3, 2 and 1 threads, best batch) and
             bench/fma_peak.cpp (the cores' float32 multiply-add peak, 1 and 2 threads), before
             and after the other sections (the larger is kept); with `fused` L, tapegrad's
             GFLOP/s as a share of both (flops/char = 3 * (2*(3HV + 3HH) + 2HV)), PyTorch's as
             a share of the two cores' peak (its GEMMs use both) and its one-core run's of one
             core's; then again counting the flops each tool really does (own_flops_per_char:
             tapegrad gathers the one-hot input's columns), with the share of the two cores'
             peak that twice PyTorch's median would take.

PyTorch runs with torch.set_num_threads(1) ("t1") and (2) with OMP_WAIT_POLICY=PASSIVE
("t2-passive": with the default active wait, torch's OpenMP threads spin against OpenBLAS's own
and ran 10-20x slower here); --active-t2 adds set_num_threads(2) with the default policy.
torch.set_num_threads does not set the threads of PyTorch's BLAS (Debian's OpenBLAS, pthreads):
at "t1" its GEMMs still run on both cores. The char-GRU sections add "t1-blas1"
(OPENBLAS_NUM_THREADS=1: PyTorch on one core) and print each process's CPU time / wall time. The
better PyTorch median is the one compared. Every comparison runs in alternated rounds (--runs),
the order of the tools rotated by one each round; each round is printed as it finishes; medians
per tool are compared. Ratios are tapegrad's speed / PyTorch's speed (> 1: tapegrad is faster)
and tapegrad's RSS / PyTorch's RSS.

Programs: examples from --build (default build/), Google Benchmark programs from --bench-build
(default: --build if it has bench/bench_ops, else build-bench/, configured with
-DTAPEGRAD_BUILD_BENCH=ON). All inputs are generated here or by the programs themselves (the
corpora of fused/composed are written to a scratch directory inside --build, removed at exit).

  /usr/bin/python3 tools/bench_vs_torch.py [--build build] [--bench-build build-bench] [--runs 3]
      [--sections fused,composed,sample,lstm,mlp,attention,ad,primitives,ops,gradcheck,ceiling] [--configs S,M,L]
      [--steps S=2000,M=60,L=15,sample=2000,adding=100,char-lm=40,char-lm-512=8,mlp=200,attention=150]
      [--min-time 0.5] [--ad-repeats 7] [--primitives-baseline DIR] [--unset-blas-env] [--active-t2]
      [--json out.json]

--unset-blas-env removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the environment of every
process this command starts and nowhere else.
"""
import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {  # name: (V, H, B, T, default steps)
    "S": (27, 64, 1, 25, 2000),
    "M": (65, 128, 32, 64, 60),
    "L": (65, 512, 64, 64, 15),
}
TARGETS = {"S": 5.0, "M": 2.0, "L": 2.0}  # fused: tapegrad chars/s / PyTorch chars/s, at least (issue 13)
COMPOSED_TARGETS = {"S": 8.0, "M": 2.0, "L": 1.0}
LSTM_CONFIGS = ("adding", "char-lm", "char-lm-512")  # BM_LstmTrainStep/<index>, tools/bench_lstm.py
LSTM_TARGET = 1.5
ATTENTION_TARGETS = {"speed": 1.5, "rss_ratio": 0.5}  # at least / at most
OPS_TARGETS = {"tape_overhead_ns_per_op": 150.0, "matmul_ratio": 1.15}  # at most
DEFAULT_STEPS = {**{k: v[4] for k, v in CONFIGS.items()},
                 "sample": 2000,  # characters drawn per run (10 samples)
                 "adding": 100, "char-lm": 40, "char-lm-512": 8,  # PyTorch LSTM steps per run
                 "mlp": 200,  # epochs
                 "attention": 150}
SECTIONS = ("fused", "composed", "sample", "lstm", "mlp", "attention", "ad", "primitives", "ops", "gradcheck",
            "ceiling")
OPS_BENCHMARKS = ("BM_TapeAdd64", "BM_RawAdd64", "BM_TapeMatmul128", "BM_RawSgemm128x3")
OPS_REPETITIONS = 5
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-'\"()[]{}<>/"
TORCH_VARIANTS = [("t1", 1, {}), ("t2-passive", 2, {"OMP_WAIT_POLICY": "PASSIVE"})]
ACTIVE_T2 = ("t2", 2, {})
# PyTorch's GEMMs go to Debian's OpenBLAS (pthreads build; torch reports BLAS_INFO=generic), whose
# own thread pool torch.set_num_threads does not set: at "t1" they run on both cores of this
# machine (perf stat: 1.9 CPUs utilized). "t1-blas1" confines PyTorch to one core (char-GRU only).
ONE_CORE = ("t1-blas1", 1, {"OPENBLAS_NUM_THREADS": "1"})
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PY = "/usr/bin/python3"


def flops_per_char(V, H):
    """Training FLOPs per character (forward + backward = 3x forward)."""
    return 3 * (2 * (3 * H * V + 3 * H * H) + 2 * H * V)


def own_flops_per_char(V, H, tool):
    """The multiply-adds each tool really does per character (x2), forward and backward: the
    recurrence's three products (h W_hh^T, dgh W_hh, dW_hh) 18 H^2 and the output layer's three
    6 H V for both; the one-hot input projection differs. PyTorch multiplies by the one-hot
    vectors (forward and dW_ih: 12 H V; no dx, the input needs no gradient); tapegrad gathers the
    columns of W_ih and adds dW_ih's rows (3 H additions, no products)."""
    shared = 18 * H * H + 6 * H * V
    return shared + (3 * H if tool == "tapegrad" else 12 * H * V)


def write_corpus(path, V, n=100_000, seed=1234):
    """V distinct characters (each at least once), then uniform random ones."""
    chars = ALPHABET[:V]
    rng = random.Random(seed + V)
    text = chars + "".join(rng.choice(chars) for _ in range(n - V))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def run_json(cmd, env, timeout=900):
    """Runs cmd; returns the last JSON object it printed on stdout."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    lines = [l for l in p.stdout.splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1])


def run_child(cmd, env, timeout=1800):
    """Runs cmd; returns (stdout, stderr, peak RSS of the child in MB (its own ru_maxrss, from
    wait4), wall seconds, CPU seconds (user + system, all its threads, from wait4)). Raises
    RuntimeError if it fails or outlives timeout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunks = {"out": "", "err": ""}

    def drain(stream, key):
        chunks[key] = stream.read()
    readers = [threading.Thread(target=drain, args=(p.stdout, "out")),
               threading.Thread(target=drain, args=(p.stderr, "err"))]
    for t in readers:
        t.start()
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    p.stdout.close()
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{chunks['err'][-2000:]}")
    return chunks["out"], chunks["err"], usage.ru_maxrss / 1024.0, wall, usage.ru_utime + usage.ru_stime


def last_json(text):
    lines = [l for l in text.splitlines() if l.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON object in the output:\n{text[-2000:]}")
    return json.loads(lines[-1])


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def sgemm_ceiling(env, workdir):
    """OpenBLAS sgemm 1024^3 GFLOP/s (best and median batch) with 2 and 1 threads."""
    src = os.path.join(REPO, "bench", "sgemm_ceiling.cpp")
    exe = os.path.join(workdir, "sgemm_ceiling")
    if not os.path.exists(exe):
        subprocess.run(["g++", "-O2", "-o", exe, src, "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
                        "-lopenblas"], check=True)
    out = {}
    for threads in (2, 1):
        e = dict(env, OPENBLAS_NUM_THREADS=str(threads))
        p = subprocess.run([exe, "1024"], env=e, capture_output=True, text=True, check=True)
        m = re.search(r"best\s+([\d.]+)\s+median\s+([\d.]+)", p.stdout)
        core = re.search(r"corename:\s*(\S+)", p.stdout)
        out[threads] = {"best": float(m.group(1)), "median": float(m.group(2)),
                        "corename": core.group(1) if core else "?"}
    return out


def fma_peak(workdir):
    """The cores' float32 multiply-add peak (bench/fma_peak.cpp), GFLOP/s on 1 and 2 threads."""
    src = os.path.join(REPO, "bench", "fma_peak.cpp")
    exe = os.path.join(workdir, "fma_peak")
    if not os.path.exists(exe):
        subprocess.run(["g++", "-O2", "-march=native", "-o", exe, src, "-lpthread"], check=True)
    p = subprocess.run([exe], capture_output=True, text=True, check=True)
    m = re.search(r"lanes\s+(\d+)\s+threads 1\s+([\d.]+)\s+threads 2\s+([\d.]+)", p.stdout)
    return {"lanes": int(m.group(1)), 1: float(m.group(2)), 2: float(m.group(3))}


class Job:
    """One program of an alternated comparison: label, command, environment, and how to turn its
    output into a measurement dict (which always gets "peak_rss_mb_child", "wall_s", "cpu_s" and
    "cpus_used": the whole process's CPU time over its wall time, start-up included)."""

    def __init__(self, label, cmd, env, parse):
        self.label, self.cmd, self.env, self.parse = label, cmd, env, parse

    def run(self):
        out, err, rss, wall, cpu = run_child(self.cmd, self.env)
        res = self.parse(out, err)
        res["peak_rss_mb_child"] = rss
        res["wall_s"] = wall
        res["cpu_s"] = cpu
        res["cpus_used"] = cpu / wall if wall > 0 else 0.0
        return res


def alternate(section, cfg, jobs, runs, show):
    """Runs the jobs in `runs` rounds, the order rotated by one each round; prints every run.
    Returns ({label: [measurement, ...]}, [[labels in the order run], ...])."""
    results = {j.label: [] for j in jobs}
    orders = []
    for r in range(runs):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        orders.append([j.label for j in order])
        for j in order:
            res = j.run()
            results[j.label].append(res)
            print(f"  {section:9s} {cfg:11s} round {r + 1} {j.label:20s} {show(res)}", flush=True)
    return results, orders


def compare(results, metric, higher_is_better, tapegrad_labels, torch_labels):
    """Medians per label; the better tapegrad and PyTorch variants; speed ratio (> 1: tapegrad
    faster) of their medians."""
    med = {k: statistics.median(o[metric] for o in results[k]) for k in tapegrad_labels + torch_labels}
    pick = max if higher_is_better else min
    best_tg = pick(tapegrad_labels, key=lambda k: med[k])
    best_torch = pick(torch_labels, key=lambda k: med[k])
    ratio = med[best_tg] / med[best_torch] if higher_is_better else med[best_torch] / med[best_tg]
    return {"metric": metric, "higher_is_better": higher_is_better, "median": med,
            "best_tapegrad": best_tg, "best_torch": best_torch, "ratio": ratio}


def torch_variants(env, active_t2, one_core=False):
    return [(f"torch-{label}", threads, dict(env, **extra))
            for label, threads, extra in TORCH_VARIANTS + ([ACTIVE_T2] if active_t2 else [])
            + ([ONE_CORE] if one_core else [])]


def mark(ok):
    return "meets" if ok else "MISSES"


# ---- sections ------------------------------------------------------------------------------------

def section_char_gru(a, env, tmp, paths, steps, report):
    """fused and/or composed: one set of alternated rounds per config."""
    variants = [v for v in ("fused", "composed") if v in a.sections]
    for name in a.configs:
        V, H, B, T, _ = CONFIGS[name]
        corpus = os.path.join(tmp, f"synthetic_V{V}.txt")
        if not os.path.exists(corpus):
            write_corpus(corpus, V)
        common = ["--corpus", corpus, "--hidden", str(H), "--batch", str(B), "--seq-len", str(T),
                  "--steps", str(steps[name]), "--json"]

        def parse(out, err, V=V):
            o = last_json(out)
            if o.get("vocab_size") != V:
                raise RuntimeError(f"vocab_size {o.get('vocab_size')} != {V}")
            return o
        jobs = [Job(f"tapegrad-{v}", [paths["char_gru"], "train", *common, "--checkpoint", ""]
                    + (["--composed"] if v == "composed" else []), env, parse) for v in variants]
        torch_labels = []
        for label, threads, e in torch_variants(env, a.active_t2, one_core=True):
            jobs.append(Job(label, [PY, paths["torch_char_gru"], *common, "--threads", str(threads)], e, parse))
            torch_labels.append(label)
        results, orders = alternate("/".join(variants), name, jobs, a.runs,
                                    lambda o: f"{o['chars_per_s']:12.0f} chars/s {o['peak_rss_mb']:7.1f} MB "
                                              f"{o['cpus_used']:5.2f} CPUs")
        for v in variants:
            tg = f"tapegrad-{v}"
            c = compare(results, "chars_per_s", True, [tg], torch_labels)
            rss = {k: max(o["peak_rss_mb"] for o in results[k]) for k in [tg] + torch_labels}
            target = (TARGETS if v == "fused" else COMPOSED_TARGETS)[name]
            entry = {"V": V, "H": H, "B": B, "T": T, "steps": steps[name],
                     "median_chars_per_s": {("tapegrad" if k == tg else k): x for k, x in c["median"].items()},
                     "peak_rss_mb": {("tapegrad" if k == tg else k): x for k, x in rss.items()},
                     "best_torch": c["best_torch"], "ratio": c["ratio"], "target_ratio": target,
                     "meets_target": c["ratio"] >= target,
                     "rss_ratio": rss[tg] / rss[c["best_torch"]],
                     "median_cpus_used": {("tapegrad" if k == tg else k): statistics.median(o["cpus_used"] for o in results[k])
                                          for k in [tg] + torch_labels},
                     "tapegrad_gflops": flops_per_char(V, H) * c["median"][tg] * 1e-9,
                     "torch_gflops": flops_per_char(V, H) * c["median"][c["best_torch"]] * 1e-9,
                     "round_order": orders,
                     "runs": {("tapegrad" if k == tg else k): results[k] for k in [tg] + torch_labels}}
            report.setdefault(v, {})[name] = entry
            print(f"  -> {v} {name}: tapegrad {c['median'][tg]:.0f} chars/s, torch {c['median'][c['best_torch']]:.0f} "
                  f"({c['best_torch'][6:]}): {c['ratio']:.2f}x (target >= {target}x: {mark(entry['meets_target'])}); "
                  f"RSS ratio {entry['rss_ratio']:.3f}", flush=True)


def section_sample(a, env, tmp, paths, steps, report):
    """char_gru sample vs its PyTorch twin, per config, from one checkpoint both load."""
    n = 10
    max_len = max(1, steps["sample"] // n)
    out = {}
    for name in a.configs:
        V, H, B, T, _ = CONFIGS[name]
        corpus = os.path.join(tmp, f"synthetic_V{V}.txt")
        if not os.path.exists(corpus):
            write_corpus(corpus, V)
        ck = os.path.join(tmp, f"sample_{name}.npz")
        run_child([paths["char_gru"], "train", "--corpus", corpus, "--hidden", str(H), "--batch", str(B),
                   "--seq-len", str(T), "--steps", "1", "--checkpoint", ck, "--json"], env)
        common = ["--checkpoint", ck, "--n", str(n), "--max-len", str(max_len)]

        def parse(o, err):
            r = last_json(o)
            r.pop("samples", None)
            return r
        jobs = [Job("tapegrad", [paths["char_gru"], "sample", *common, "--json"], env, parse)]
        torch_labels = []
        for label, threads, e in torch_variants(env, a.active_t2):
            jobs.append(Job(label, [PY, paths["torch_char_gru_sample"], *common, "--threads", str(threads)], e, parse))
            torch_labels.append(label)
        results, orders = alternate("sample", name, jobs, a.runs,
                                    lambda o: f"{o['chars_per_s']:12.0f} chars/s ({o['characters']} drawn)")
        c = compare(results, "chars_per_s", True, ["tapegrad"], torch_labels)
        c.update(V=V, H=H, samples=n, max_len=max_len, round_order=orders, runs=results)
        out[name] = c
        print(f"  -> sample {name}: tapegrad {c['median']['tapegrad']:.0f} chars/s, torch "
              f"{c['median'][c['best_torch']]:.0f} ({c['best_torch'][6:]}): {c['ratio']:.2f}x", flush=True)
    report["sample"] = out


def section_lstm(a, env, paths, steps, report):
    out = {}
    for i, name in enumerate(LSTM_CONFIGS):
        def parse_gbench(o, err):
            b = json.loads(o)["benchmarks"][0]
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
            return {"ms_per_step": b["real_time"] * scale, "iterations": b["iterations"], "label": b.get("label", "")}

        def parse_torch(o, err):
            return last_json(o)
        jobs, tg_labels, torch_labels = [], [], []
        for blas in (1, 2):
            label = f"tapegrad-blas{blas}"
            jobs.append(Job(label, [paths["bench_lstm"], f"--benchmark_filter=^BM_LstmTrainStep/{i}/",
                                    "--benchmark_format=json", f"--benchmark_min_time={a.min_time}"],
                            dict(env, OPENBLAS_NUM_THREADS=str(blas)), parse_gbench))
            tg_labels.append(label)
        for label, threads, e in torch_variants(env, a.active_t2):
            jobs.append(Job(label, [PY, paths["bench_lstm_py"], "--configs", name, "--threads", str(threads),
                                    "--steps", str(steps[name]), "--repeats", "1", "--json"], e, parse_torch))
            torch_labels.append(label)
        results, orders = alternate("lstm", name, jobs, a.runs, lambda o: f"{o['ms_per_step']:10.2f} ms/step")
        c = compare(results, "ms_per_step", False, tg_labels, torch_labels)
        c.update(target_ratio=LSTM_TARGET, meets_target=c["ratio"] >= LSTM_TARGET, torch_steps=steps[name],
                 tapegrad_min_time_s=a.min_time, round_order=orders, runs=results)
        out[name] = c
        print(f"  -> lstm {name}: tapegrad {c['median'][c['best_tapegrad']]:.2f} ms ({c['best_tapegrad'][9:]}), torch "
              f"{c['median'][c['best_torch']]:.2f} ms ({c['best_torch'][6:]}): {c['ratio']:.2f}x "
              f"(target >= {LSTM_TARGET}x: {mark(c['meets_target'])})", flush=True)
    report["lstm"] = out


def program_vs_twin(a, env, paths, section, cfg, program, count_flag, n, show):
    """The example `program` (its --json) and its PyTorch twin tools/torch_<program>.py, each with
    `count_flag n`, alternated; returns (the comparison of their seconds, results, round order,
    the torch labels)."""
    jobs = [Job("tapegrad", [paths[program], count_flag, str(n), "--json"], env, lambda o, e: last_json(o))]
    torch_labels = []
    for label, threads, e in torch_variants(env, a.active_t2):
        jobs.append(Job(label, [PY, paths["torch_" + program], count_flag, str(n), "--threads", str(threads)], e,
                        lambda o, e: last_json(o)))
        torch_labels.append(label)
    results, orders = alternate(section, cfg, jobs, a.runs, show)
    return compare(results, "seconds", False, ["tapegrad"], torch_labels), results, orders, torch_labels


def section_mlp(a, env, paths, steps, report):
    n = steps["mlp"]
    c, results, orders, _ = program_vs_twin(
        a, env, paths, "mlp", "spirals", "mlp_spirals", "--epochs", n,
        lambda o: f"{o['seconds']:8.3f} s  test acc {o['test_accuracy']:.3f} {o['peak_rss_mb_child']:7.1f} MB")
    c.update(epochs=n, round_order=orders, runs=results,
             median_test_accuracy={k: statistics.median(o["test_accuracy"] for o in v) for k, v in results.items()})
    report["mlp"] = c
    print(f"  -> mlp: tapegrad {c['median']['tapegrad']:.3f} s, torch {c['median'][c['best_torch']]:.3f} s "
          f"({c['best_torch'][6:]}): {c['ratio']:.2f}x", flush=True)


def section_attention(a, env, paths, steps, report):
    n = steps["attention"]
    c, results, orders, torch_labels = program_vs_twin(
        a, env, paths, "attention", "dates", "date_translation", "--steps", n,
        lambda o: f"{o['seconds']:8.3f} s  accuracy {o['accuracy']:.3f} {o['peak_rss_mb_child']:7.1f} MB")
    rss = {k: max(o["peak_rss_mb_child"] for o in v) for k, v in results.items()}
    c.update(steps=n, peak_rss_mb=rss, rss_ratio=rss["tapegrad"] / rss[c["best_torch"]],
             rss_ratio_vs_smallest_torch=rss["tapegrad"] / min(rss[k] for k in torch_labels),
             target_ratio=ATTENTION_TARGETS["speed"], target_rss_ratio=ATTENTION_TARGETS["rss_ratio"],
             median_accuracy={k: statistics.median(o["accuracy"] for o in v) for k, v in results.items()},
             round_order=orders, runs=results)
    c["meets_target"] = c["ratio"] >= ATTENTION_TARGETS["speed"]
    c["meets_rss_target"] = c["rss_ratio"] <= ATTENTION_TARGETS["rss_ratio"]
    report["attention"] = c
    print(f"  -> attention: tapegrad {c['median']['tapegrad']:.3f} s, torch {c['median'][c['best_torch']]:.3f} s "
          f"({c['best_torch'][6:]}): {c['ratio']:.2f}x (target >= {ATTENTION_TARGETS['speed']}x: "
          f"{mark(c['meets_target'])}); RSS {rss['tapegrad']:.1f} / {rss[c['best_torch']]:.1f} MB = "
          f"{c['rss_ratio']:.3f} (target <= {ATTENTION_TARGETS['rss_ratio']}: {mark(c['meets_rss_target'])})", flush=True)


def section_ad(a, env, paths, report):
    rounds = []
    for r in range(a.runs):
        _, err, _, _, _ = run_child([paths["ad_suite"], "--repeats", str(a.ad_repeats)], env)
        cases = {}
        for line in err.splitlines():
            if line.strip().startswith("{"):
                o = json.loads(line)
                cases[o["case"]] = {k: o[k] for k in ("function_us", "gradient_us", "ratio")}
        rounds.append(cases)
        print(f"  ad        round {r + 1} " + "  ".join(f"{k} {v['ratio']:.2f}" for k, v in cases.items()), flush=True)
    med = {k: {f: statistics.median(rd[k][f] for rd in rounds) for f in ("function_us", "gradient_us", "ratio")}
           for k in rounds[0]}
    report["ad"] = {"repeats": a.ad_repeats, "median": med, "rounds": rounds}
    print("  -> ad (gradient time / function time, medians): "
          + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in med.items()), flush=True)


def section_primitives(a, env, paths, report):
    def parse(o, err):
        cases = {}
        for line in o.splitlines():
            if line.strip().startswith("{"):
                d = json.loads(line)
                cases[d["case"]] = d["us"]
        if not cases:
            raise RuntimeError("no case printed: " + err[-500:])
        return {"us": cases}
    tg_names = subprocess.run([paths["primitives"], "--list"], capture_output=True, text=True, check=True).stdout.split()
    torch_names = subprocess.run([PY, paths["torch_primitives"], "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
    if tg_names != torch_names:
        raise RuntimeError(f"bench/primitives and tools/torch_primitives.py list different cases: "
                           f"{sorted(set(tg_names) ^ set(torch_names))}")
    jobs = [Job("tapegrad", [paths["primitives"], "--repeats", str(a.ad_repeats)], env, parse)]
    baseline = None
    if a.primitives_baseline:
        baseline = os.path.join(os.path.abspath(a.primitives_baseline), "bench", "primitives")
        base_names = subprocess.run([baseline, "--list"], capture_output=True, text=True, check=True).stdout.split()
        if base_names != tg_names:
            raise RuntimeError(f"{baseline} lists other cases than {paths['primitives']}")
        jobs.append(Job("tapegrad-baseline", [baseline, "--repeats", str(a.ad_repeats)], env, parse))
    torch_labels = []
    for label, threads, e in torch_variants(env, a.active_t2):
        jobs.append(Job(label, [PY, paths["torch_primitives"], "--threads", str(threads), "--repeats", str(a.ad_repeats)],
                        e, parse))
        torch_labels.append(label)
    results, orders = alternate("primitives", "all ops", jobs, a.runs,
                                lambda o: f"{len(o['us'])} cases, {sum(o['us'].values()) / 1e3:8.2f} ms in all")
    per_case = {}
    for name in tg_names:
        med = {k: statistics.median(o["us"][name] for o in results[k]) for k in results}
        best = min(torch_labels, key=lambda k: med[k])
        per_case[name] = {"median_us": med, "best_torch": best, "ratio": med[best] / med["tapegrad"]}
        if baseline:
            per_case[name]["baseline_ratio"] = med[best] / med["tapegrad-baseline"]
            per_case[name]["speedup_over_baseline"] = med["tapegrad-baseline"] / med["tapegrad"]
    slower = [n for n, c in per_case.items() if c["ratio"] < 1.0]
    report["primitives"] = {"repeats": a.ad_repeats, "cases": per_case, "slower_than_torch": slower,
                            "baseline": baseline, "round_order": orders, "runs": results}
    print(f"  -> primitives: {len(per_case)} ops, tapegrad slower than PyTorch in {len(slower)}"
          + (": " + ", ".join(f"{n} {per_case[n]['ratio']:.2f}x" for n in slower) if slower else ""), flush=True)


def section_ops(a, env, paths, report):
    e1 = dict(env, OPENBLAS_NUM_THREADS="1")

    def parse(o, err):
        reps = []
        for b in json.loads(o)["benchmarks"]:
            if b.get("run_type") == "aggregate":
                continue
            scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
            rep = {"real_time_ns": b["real_time"] * scale, "cpu_time_ns": b["cpu_time"] * scale,
                   "iterations": b["iterations"]}
            for k in ("ns_per_op", "GFLOP/s"):
                if k in b:
                    rep[k] = b[k]
            reps.append(rep)
        if not reps:
            raise RuntimeError("bench_ops printed no benchmark")
        best = min(reps, key=lambda r: r["real_time_ns"])  # the least disturbed repetition
        res = {"name": json.loads(o)["benchmarks"][0]["name"], **best,
               "repetitions_real_time_ns": [r["real_time_ns"] for r in reps]}
        return res

    def show(o):
        extra = f"  ns_per_op {o['ns_per_op']:.1f}" if "ns_per_op" in o else f"  {o.get('GFLOP/s', 0):.1f} GFLOP/s"
        reps = o["repetitions_real_time_ns"]
        return (f"{o['real_time_ns']:12.0f} ns real{extra}  (fastest of {len(reps)}; their median "
                f"{statistics.median(reps):.0f} ns)")
    jobs = [Job(b, [paths["bench_ops"], f"--benchmark_filter=^{b}(/real_time)?$", "--benchmark_format=json",
                    f"--benchmark_min_time={a.min_time}", f"--benchmark_repetitions={OPS_REPETITIONS}"],
                e1, parse) for b in OPS_BENCHMARKS]
    results, orders = alternate("ops", "1 blas thr", jobs, a.runs, show)
    med = {b: {k: statistics.median(o[k] for o in results[b]) for k in results[b][0] if isinstance(results[b][0][k], float)}
           for b in OPS_BENCHMARKS}
    tape, raw = med["BM_TapeAdd64"]["ns_per_op"], med["BM_RawAdd64"]["ns_per_op"]
    mm = med["BM_TapeMatmul128"]["real_time_ns"] / med["BM_RawSgemm128x3"]["real_time_ns"]
    r = {"openblas_num_threads": 1, "min_time_s": a.min_time, "repetitions": OPS_REPETITIONS,
         "statistic": "median over the rounds of each round's fastest repetition", "median": med,
         "tape_add_ns_per_op": tape, "raw_add_ns_per_op": raw, "tape_overhead_ns_per_op": tape - raw,
         "matmul_ratio": mm, "targets": OPS_TARGETS,
         "meets_overhead_target": tape - raw <= OPS_TARGETS["tape_overhead_ns_per_op"],
         "meets_matmul_target": mm <= OPS_TARGETS["matmul_ratio"], "round_order": orders, "runs": results}
    report["ops"] = r
    print(f"  -> ops: tape add {tape:.1f} ns/op, raw {raw:.1f} ns/op: overhead {tape - raw:.1f} ns/op (target <= "
          f"{OPS_TARGETS['tape_overhead_ns_per_op']:.0f}: {mark(r['meets_overhead_target'])}); matmul 128 tape / raw "
          f"sgemm x3 = {mm:.3f} (target <= {OPS_TARGETS['matmul_ratio']}: {mark(r['meets_matmul_target'])})", flush=True)


def section_gradcheck(a, env, paths, report):
    gc = {"tapegrad_fused": [], "tapegrad_composed": [], "torch": []}
    for r in range(a.runs):
        steps = [("tapegrad", [paths["gradcheck_gru_lm"], "--repeat", "1"]),
                 ("torch", [PY, paths["torch_gradcheck_gru_lm"], "--threads", "1"])]
        for who, cmd in (steps if r % 2 == 0 else steps[::-1]):
            out, _, _, _, _ = run_child(cmd, env)
            for line in out.splitlines():
                if not line.strip().startswith("{"):
                    continue
                o = json.loads(line)
                if who == "tapegrad":
                    gc[f"tapegrad_{o['path']}"].append(o)
                elif o.get("n_inputs") == 1546:
                    gc["torch"].append(o)
        print(f"  gradcheck round {r + 1} tapegrad fused {gc['tapegrad_fused'][-1]['seconds']:.4f} s, composed "
              f"{gc['tapegrad_composed'][-1]['seconds']:.4f} s, torch {gc['torch'][-1]['gradcheck_s']:.3f} s", flush=True)
    gc["median_s"] = {
        "tapegrad_fused": statistics.median(o["seconds"] for o in gc["tapegrad_fused"]),
        "tapegrad_composed": statistics.median(o["seconds"] for o in gc["tapegrad_composed"]),
        "torch": statistics.median(o["gradcheck_s"] for o in gc["torch"]),
    }
    gc["ratio_fused"] = gc["median_s"]["torch"] / gc["median_s"]["tapegrad_fused"]
    gc["ratio_composed"] = gc["median_s"]["torch"] / gc["median_s"]["tapegrad_composed"]
    report["gradcheck"] = gc


# ---- driver --------------------------------------------------------------------------------------

def parse_steps(text):
    steps = dict(DEFAULT_STEPS)
    for kv in filter(None, text.split(",")):
        k, _, v = kv.partition("=")
        if k not in steps or not v.isdigit() or int(v) < 1:
            sys.exit(f"error: --steps {kv!r}: expected KEY=N with N >= 1, KEY one of {', '.join(steps)}")
        steps[k] = int(v)
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="tapegrad build directory (examples)")
    ap.add_argument("--bench-build", default=None,
                    help="build directory with the benchmark programs (default: --build if it has bench/bench_ops, "
                         "else build-bench)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--configs", default="S,M,L", help="char-GRU configs for fused/composed")
    ap.add_argument("--runs", type=int, default=3, help="alternated rounds (>= 3 for a median)")
    ap.add_argument("--steps", default="",
                    help="override steps, e.g. S=1000,L=10,adding=50,mlp=100,attention=50 (defaults: "
                         + ",".join(f"{k}={v}" for k, v in DEFAULT_STEPS.items()) + ")")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="--benchmark_min_time (s) for bench_lstm and bench_ops")
    ap.add_argument("--ad-repeats", type=int, default=7, help="ad_suite and primitives --repeats")
    ap.add_argument("--primitives-baseline", default=None,
                    help="a build directory with bench/primitives (another commit) to run in the primitives rounds")
    ap.add_argument("--unset-blas-env", action="store_true",
                    help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for every process started here")
    ap.add_argument("--active-t2", action="store_true",
                    help="also run torch with 2 threads and the default OpenMP wait policy")
    ap.add_argument("--no-gradcheck", action="store_true", help="leave out the gradcheck section")
    ap.add_argument("--json", default=None, help="write all measurements to this file")
    a = ap.parse_args()

    a.sections = [s for s in filter(None, a.sections.split(","))]
    for s in a.sections:
        if s not in SECTIONS:
            sys.exit(f"error: unknown section {s!r} (known: {', '.join(SECTIONS)})")
    if a.no_gradcheck and "gradcheck" in a.sections:
        a.sections.remove("gradcheck")
    a.configs = [c for c in filter(None, a.configs.split(","))]
    for c in a.configs:
        if c not in CONFIGS:
            sys.exit(f"error: unknown config {c!r} (known: {', '.join(CONFIGS)})")
    if a.runs < 1:
        sys.exit("error: --runs must be at least 1")
    steps = parse_steps(a.steps)

    build = os.path.abspath(a.build)
    bench_build = a.bench_build
    if bench_build is None:
        bench_build = build if os.path.exists(os.path.join(build, "bench", "bench_ops")) else os.path.join(REPO, "build-bench")
    bench_build = os.path.abspath(bench_build)
    paths = {
        "char_gru": os.path.join(build, "examples", "char_gru"),
        "mlp_spirals": os.path.join(build, "examples", "mlp_spirals"),
        "date_translation": os.path.join(build, "examples", "date_translation"),
        "bench_lstm": os.path.join(bench_build, "bench", "bench_lstm"),
        "bench_ops": os.path.join(bench_build, "bench", "bench_ops"),
        "ad_suite": os.path.join(bench_build, "bench", "ad_suite"),
        "primitives": os.path.join(bench_build, "bench", "primitives"),
        "torch_primitives": os.path.join(REPO, "tools", "torch_primitives.py"),
        "gradcheck_gru_lm": os.path.join(bench_build, "bench", "gradcheck_gru_lm"),
        "torch_char_gru": os.path.join(REPO, "tools", "torch_char_gru.py"),
        "torch_char_gru_sample": os.path.join(REPO, "tools", "torch_char_gru_sample.py"),
        "bench_lstm_py": os.path.join(REPO, "tools", "bench_lstm.py"),
        "torch_mlp_spirals": os.path.join(REPO, "tools", "torch_mlp_spirals.py"),
        "torch_date_translation": os.path.join(REPO, "tools", "torch_date_translation.py"),
        "torch_gradcheck_gru_lm": os.path.join(REPO, "tools", "torch_gradcheck_gru_lm.py"),
    }
    needs = {"fused": ["char_gru"], "composed": ["char_gru"], "sample": ["char_gru"], "lstm": ["bench_lstm"], "mlp": ["mlp_spirals"],
             "attention": ["date_translation"], "ad": ["ad_suite"], "primitives": ["primitives"], "ops": ["bench_ops"],
             "gradcheck": ["gradcheck_gru_lm"], "ceiling": []}
    missing = sorted({paths[p] for s in a.sections for p in needs[s] if not os.path.exists(paths[p])})
    if missing:
        sys.exit("error: not built: " + ", ".join(missing) + "\n(examples: cmake --build " + build
                 + " --target char_gru mlp_spirals date_translation; benchmarks: cmake -S . -B build-bench "
                 "-DTAPEGRAD_BUILD_BENCH=ON && cmake --build build-bench --target bench_lstm bench_ops ad_suite primitives "
                 "gradcheck_gru_lm; or leave the section out with --sections)")

    env = dict(os.environ)
    if a.unset_blas_env:
        for k in BLAS_VARS:
            env.pop(k, None)
    t_start = time.perf_counter()
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                    "load_start": load_average(),
                    "blas_env": {k: env.get(k) for k in BLAS_VARS + ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}},
        "unset_blas_env": a.unset_blas_env, "sections": a.sections, "runs": a.runs, "steps": steps,
        "min_time_s": a.min_time, "build": build, "bench_build": bench_build,
    }
    print(f"environment: {'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset' if a.unset_blas_env else 'as inherited'} "
          f"{report['machine']['blas_env']}; load average {report['machine']['load_start']}", flush=True)
    print(f"sections: {','.join(a.sections)}; {a.runs} rounds; examples from {build}, benchmarks from {bench_build}",
          flush=True)

    timings = {}
    with tempfile.TemporaryDirectory(prefix=".bench_vs_torch.", dir=build) as tmp:
        if "ceiling" in a.sections:
            ceiling_before = sgemm_ceiling(env, tmp)
            peak_before = fma_peak(tmp)
        if "fused" in a.sections or "composed" in a.sections:
            t0 = time.perf_counter()
            section_char_gru(a, env, tmp, paths, steps, report)
            timings["fused+composed"] = time.perf_counter() - t0
        for name, fn in (("sample", lambda: section_sample(a, env, tmp, paths, steps, report)),
                         ("lstm", lambda: section_lstm(a, env, paths, steps, report)),
                         ("mlp", lambda: section_mlp(a, env, paths, steps, report)),
                         ("attention", lambda: section_attention(a, env, paths, steps, report)),
                         ("ad", lambda: section_ad(a, env, paths, report)),
                         ("primitives", lambda: section_primitives(a, env, paths, report)),
                         ("ops", lambda: section_ops(a, env, paths, report)),
                         ("gradcheck", lambda: section_gradcheck(a, env, paths, report))):
            if name in a.sections:
                t0 = time.perf_counter()
                fn()
                timings[name] = time.perf_counter() - t0
        if "ceiling" in a.sections:
            ceiling_after = sgemm_ceiling(env, tmp)
            peak_after = fma_peak(tmp)

    if "ceiling" in a.sections:
        ceiling = {t: max(ceiling_before[t]["best"], ceiling_after[t]["best"]) for t in (1, 2)}
        report["sgemm_ceiling_gflops"] = {"2_threads": ceiling[2], "1_thread": ceiling[1],
                                          "before": ceiling_before, "after": ceiling_after}
        report["machine"]["openblas_core"] = ceiling_before[2]["corename"]
        peak = {t: max(peak_before[t], peak_after[t]) for t in (1, 2)}
        report["fma_peak_gflops"] = {"2_threads": peak[2], "1_thread": peak[1], "lanes": peak_before["lanes"],
                                     "before": {str(t): peak_before[t] for t in (1, 2)},
                                     "after": {str(t): peak_after[t] for t in (1, 2)}}
        if "L" in report.get("fused", {}):
            L = report["fused"]["L"]
            L["share_of_2_thread_ceiling"] = L["tapegrad_gflops"] / ceiling[2]
            L["share_of_2_core_fma_peak"] = L["tapegrad_gflops"] / peak[2]
            # PyTorch's best setting uses both cores for its GEMMs (ONE_CORE above): its share of
            # the two cores' peak; the one-core run's share of one core's.
            L["torch_share_of_2_core_fma_peak"] = L["torch_gflops"] / peak[2]
            # Counting the flops each tool does, and the share of the two cores' peak that 2x the
            # best PyTorch median would take (the bar).
            V, H, md = L["V"], L["H"], L["median_chars_per_s"]
            L["own_flops_per_char"] = {"tapegrad": own_flops_per_char(V, H, "tapegrad"),
                                       "torch": own_flops_per_char(V, H, "torch")}
            L["own_share_of_2_core_fma_peak"] = md["tapegrad"] * L["own_flops_per_char"]["tapegrad"] * 1e-9 / peak[2]
            L["torch_own_share_of_2_core_fma_peak"] = (md[L["best_torch"]] * L["own_flops_per_char"]["torch"] * 1e-9
                                                       / peak[2])
            one = "torch-" + ONE_CORE[0]
            if one in md:
                L["torch_one_core_own_share_of_1_core_fma_peak"] = md[one] * L["own_flops_per_char"]["torch"] * 1e-9 / peak[1]
            L["share_of_2_core_fma_peak_for_2x"] = (2 * md[L["best_torch"]] * L["own_flops_per_char"]["tapegrad"]
                                                    * 1e-9 / peak[2])
    report["machine"]["load_end"] = load_average()
    report["section_seconds"] = timings
    report["elapsed_s"] = time.perf_counter() - t_start

    # ---- summary ----
    m = report["machine"]
    print(f"\nmachine: {m['cpu']}, {m['nproc']} CPUs, OpenBLAS core {m.get('openblas_core', '?')}; load average "
          f"start {m['load_start']} end {m['load_end']}; {report['elapsed_s']:.0f} s in all")
    for v in ("fused", "composed"):
        if v not in report:
            continue
        print(f"\nchar-GRU, {v} GRU (chars/s, medians of {a.runs}):")
        print(f"{'cfg':3s} {'tapegrad c/s':>13s} {'torch c/s':>11s} {'(best)':12s} {'ratio':>6s} {'target':>7s} "
              f"{'':7s} {'tg RSS':>7s} {'torch RSS':>9s} {'RSS ratio':>9s}")
        for name, c in report[v].items():
            md = c["median_chars_per_s"]
            print(f"{name:3s} {md['tapegrad']:13.0f} {md[c['best_torch']]:11.0f} {c['best_torch'][6:]:12s} "
                  f"{c['ratio']:6.2f} {'>= ' + str(c['target_ratio']):>7s} {mark(c['meets_target']):7s} "
                  f"{c['peak_rss_mb']['tapegrad']:7.1f} {c['peak_rss_mb'][c['best_torch']]:9.1f} {c['rss_ratio']:9.3f}")
        for name, c in report[v].items():
            others = ", ".join(f"{k[6:]} {x:.0f}" for k, x in c["median_chars_per_s"].items() if k.startswith("torch"))
            cpus = ", ".join(f"{k} {x:.2f}" for k, x in c["median_cpus_used"].items())
            print(f"  {name}: torch medians by thread setting: {others}; CPUs used (process CPU time / wall, "
                  f"start-up included): {cpus}")
    if "sgemm_ceiling_gflops" in report:
        cg = report["sgemm_ceiling_gflops"]
        print(f"sgemm ceiling (1024^3, best batch): 2 threads {cg['2_threads']:.1f} GFLOP/s, 1 thread {cg['1_thread']:.1f}")
        if "L" in report.get("fused", {}):
            c = report["fused"]["L"]
            print(f"L (fused): tapegrad {c['tapegrad_gflops']:.1f} GFLOP/s = {100 * c['share_of_2_thread_ceiling']:.0f}% "
                  f"of the 2-thread ceiling (torch {c['torch_gflops']:.1f} GFLOP/s); flops/char = "
                  f"{flops_per_char(c['V'], c['H'])}")
    if "fma_peak_gflops" in report:
        pk = report["fma_peak_gflops"]
        print(f"multiply-add peak (bench/fma_peak.cpp, {pk['lanes']} lanes): 2 cores {pk['2_threads']:.1f} GFLOP/s, "
              f"1 core {pk['1_thread']:.1f}")
        if "L" in report.get("fused", {}):
            c = report["fused"]["L"]
            print(f"L (fused): tapegrad {100 * c['share_of_2_core_fma_peak']:.0f}% of the 2-core peak, torch "
                  f"({c['best_torch'][6:]}) {100 * c['torch_share_of_2_core_fma_peak']:.0f}% of it (nominal flops)")
            of = c["own_flops_per_char"]
            one = ""
            if "torch_one_core_own_share_of_1_core_fma_peak" in c:
                one = (f"; torch on one core ({ONE_CORE[0]}) "
                       f"{100 * c['torch_one_core_own_share_of_1_core_fma_peak']:.0f}% of the 1-core peak")
            print(f"L (fused), each tool's own flops ({of['tapegrad'] / 1e6:.2f} and {of['torch'] / 1e6:.2f} MFLOP/char): "
                  f"tapegrad {100 * c['own_share_of_2_core_fma_peak']:.0f}% of the 2-core peak, torch "
                  f"({c['best_torch'][6:]}) {100 * c['torch_own_share_of_2_core_fma_peak']:.0f}%{one}; "
                  f"2x the best torch would take {100 * c['share_of_2_core_fma_peak_for_2x']:.0f}% of the 2-core peak "
                  f"for a whole training step")
    if "sample" in report:
        print(f"\nsampling, one character per forward (characters/s, medians of {a.runs}):")
        for name, c in report["sample"].items():
            md = c["median"]
            print(f"  {name:3s} H={c['H']:<4d} tapegrad {md['tapegrad']:9.0f}  torch {md[c['best_torch']]:9.0f} "
                  f"({c['best_torch'][6:]})  ratio {c['ratio']:6.2f};  all: "
                  + ", ".join(f"{k} {x:.0f}" for k, x in md.items()))
    if "lstm" in report:
        print(f"\nLSTM layer, one training step (ms, medians of {a.runs}; tapegrad's and torch's better setting):")
        for name, c in report["lstm"].items():
            md = c["median"]
            print(f"  {name:11s} tapegrad {md[c['best_tapegrad']]:9.2f} ({c['best_tapegrad'][9:]})  torch "
                  f"{md[c['best_torch']]:9.2f} ({c['best_torch'][6:]})  ratio {c['ratio']:5.2f} (target >= "
                  f"{c['target_ratio']}: {mark(c['meets_target'])});  all: "
                  + ", ".join(f"{k} {x:.2f}" for k, x in md.items()))
    if "mlp" in report:
        c = report["mlp"]
        print(f"\nMLP spirals, {c['epochs']} epochs: tapegrad {c['median']['tapegrad']:.3f} s, torch "
              f"{c['median'][c['best_torch']]:.3f} s ({c['best_torch'][6:]}): ratio {c['ratio']:.2f}; test accuracy "
              + ", ".join(f"{k} {x:.3f}" for k, x in c["median_test_accuracy"].items()))
    if "attention" in report:
        c = report["attention"]
        print(f"\ndate translation (attention), {c['steps']} steps: tapegrad {c['median']['tapegrad']:.3f} s, torch "
              f"{c['median'][c['best_torch']]:.3f} s ({c['best_torch'][6:]}): ratio {c['ratio']:.2f} (target >= "
              f"{c['target_ratio']}: {mark(c['meets_target'])}); peak RSS tapegrad {c['peak_rss_mb']['tapegrad']:.1f} MB, "
              f"torch {c['peak_rss_mb'][c['best_torch']]:.1f} MB: ratio {c['rss_ratio']:.3f} (target <= "
              f"{c['target_rss_ratio']}: {mark(c['meets_rss_target'])})")
    if "ad" in report:
        print(f"\nAD suite (medians of {a.runs} runs of ad_suite --repeats {a.ad_repeats}):")
        print(f"  {'case':14s} {'function us':>12s} {'gradient us':>12s} {'ratio':>7s}")
        for k, v in report["ad"]["median"].items():
            print(f"  {k:14s} {v['function_us']:12.2f} {v['gradient_us']:12.2f} {v['ratio']:7.2f}")
    if "primitives" in report:
        p = report["primitives"]
        print(f"\nprimitives, forward + backward (us per call, medians of {a.runs}; ratio = better torch / tapegrad):")
        base = p.get("baseline")
        print(f"  {'op':18s} {'tapegrad':>10s} {'torch':>10s} {'(best)':11s} {'ratio':>6s}"
              + (f" {'baseline':>10s} {'its ratio':>9s} {'speed-up':>8s}" if base else ""))
        for n, c in p["cases"].items():
            print(f"  {n:18s} {c['median_us']['tapegrad']:10.1f} {c['median_us'][c['best_torch']]:10.1f} "
                  f"{c['best_torch'][6:]:11s} {c['ratio']:6.2f}"
                  + (f" {c['median_us']['tapegrad-baseline']:10.1f} {c['baseline_ratio']:9.2f} "
                     f"{c['speedup_over_baseline']:8.2f}" if base else ""))
        if base:
            print(f"  (baseline: {base})")
        print(f"  slower than PyTorch: {', '.join(p['slower_than_torch']) or 'none'}")
    if "ops" in report:
        c = report["ops"]
        print(f"\nengine micro-benchmarks (OPENBLAS_NUM_THREADS=1, medians of {a.runs}):")
        print(f"  tape overhead per recorded add: {c['tape_add_ns_per_op']:.1f} - {c['raw_add_ns_per_op']:.1f} = "
              f"{c['tape_overhead_ns_per_op']:.1f} ns (target <= {OPS_TARGETS['tape_overhead_ns_per_op']:.0f}: "
              f"{mark(c['meets_overhead_target'])})")
        print(f"  128x128 matmul fwd+bwd: tape {c['median']['BM_TapeMatmul128']['real_time_ns'] / 1e3:.1f} us, raw "
              f"3 x sgemm {c['median']['BM_RawSgemm128x3']['real_time_ns'] / 1e3:.1f} us: {c['matmul_ratio']:.3f}x "
              f"(target <= {OPS_TARGETS['matmul_ratio']}: {mark(c['meets_matmul_target'])})")
    if "gradcheck" in report:
        g = report["gradcheck"]["median_s"]
        print(f"\ngradcheck GRU LM (1,546 inputs, float64): tapegrad fused {g['tapegrad_fused']:.3f} s, composed "
              f"{g['tapegrad_composed']:.3f} s, torch {g['torch']:.3f} s -> {report['gradcheck']['ratio_fused']:.1f}x "
              f"(composed {report['gradcheck']['ratio_composed']:.1f}x)")
    print("\nseconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
