#!/usr/bin/python3
"""tapegrad's `char_gru train` against the same model in PyTorch, side by side on this machine.

For each config S, M, L (V, H, B, T below) both tools train the same model (one-hot inputs,
GRU(V -> H) + Linear(H -> V), mean cross-entropy, Adam, clip_grad_norm 5, truncated BPTT) on the
same synthetic text (V distinct characters, uniform random, fixed seed), float32:
  tapegrad  examples/char_gru train ... --json          (the fused GRU, char_gru's default)
  PyTorch   tools/torch_char_gru.py ... --json           with torch.set_num_threads(1) and (2),
            the latter with OMP_WAIT_POLICY=PASSIVE (torch's OpenMP threads otherwise spin
            against OpenBLAS's own threads: 10-20x slower here); the better median is reported.
            --active-t2 also runs set_num_threads(2) with the default (spinning) wait policy.
Runs alternate (tapegrad, then the torch variants, rotated each round), --runs rounds; the
medians are compared. chars/s excludes start-up and the held-out evaluation (both
tools time only their training loop); peak RSS is each process's ru_maxrss.

Also measured in the same environment:
  * the sgemm ceiling: bench/sgemm_ceiling.cpp (OpenBLAS sgemm 1024^3, 2 threads, best
    batch), before and after the training runs (the larger is kept), and tapegrad's achieved
    GFLOP/s for L with the usual formula: flops/char = 3 * (2*(3HV + 3HH) + 2HV);
  * the float64 gradcheck of a GRU LM (V=10, H=16, B=2, T=8, 1,546 inputs): bench/gradcheck_gru_lm
    (fused and composed GRU) against tools/torch_gradcheck_gru_lm.py (torch.autograd.gradcheck).

  /usr/bin/python3 tools/bench_vs_torch.py --build build [--runs 3] [--unset-blas-env] [--json out.json]

--unset-blas-env removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the environment of every
process this command starts (both tools, sgemm_ceiling, the gradchecks) and nowhere else.
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
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {  # name: (V, H, B, T, default steps)
    "S": (27, 64, 1, 25, 2000),
    "M": (65, 128, 32, 64, 60),
    "L": (65, 512, 64, 64, 15),
}
TARGETS = {"S": 5.0, "M": 2.0, "L": 1.3}
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-'\"()[]{}<>/"
TORCH_VARIANTS = [("t1", 1, {}), ("t2-passive", 2, {"OMP_WAIT_POLICY": "PASSIVE"})]
ACTIVE_T2 = ("t2", 2, {})
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def flops_per_char(V, H):
    """Training FLOPs per character (forward + backward = 3x forward)."""
    return 3 * (2 * (3 * H * V + 3 * H * H) + 2 * H * V)


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="tapegrad build directory")
    ap.add_argument("--configs", default="S,M,L")
    ap.add_argument("--runs", type=int, default=3, help="alternated rounds (>= 3 for a median)")
    ap.add_argument("--steps", default="", help="override steps, e.g. S=1000,L=10")
    ap.add_argument("--unset-blas-env", action="store_true",
                    help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for every process started here")
    ap.add_argument("--active-t2", action="store_true",
                    help="also run torch with 2 threads and the default OpenMP wait policy")
    ap.add_argument("--no-gradcheck", action="store_true")
    ap.add_argument("--json", default=None, help="write all measurements to this file")
    a = ap.parse_args()

    env = dict(os.environ)
    if a.unset_blas_env:
        for k in BLAS_VARS:
            env.pop(k, None)
    char_gru = os.path.join(a.build, "examples", "char_gru")
    gradcheck_bin = os.path.join(a.build, "bench", "gradcheck_gru_lm")
    torch_script = os.path.join(REPO, "tools", "torch_char_gru.py")
    torch_bench = os.path.join(REPO, "tools", "torch_gradcheck_gru_lm.py")
    if not os.path.exists(char_gru):
        sys.exit(f"error: {char_gru} not found (build tapegrad first, --build DIR)")
    steps = {k: v[4] for k, v in CONFIGS.items()}
    for kv in filter(None, a.steps.split(",")):
        k, v = kv.split("=")
        steps[k] = int(v)

    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                    "load_start": load_average(),
                    "blas_env": {k: env.get(k) for k in BLAS_VARS + ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}},
        "unset_blas_env": a.unset_blas_env, "configs": {},
    }
    try:
        with open("/proc/cpuinfo") as f:
            report["machine"]["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"environment: {'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset' if a.unset_blas_env else 'as inherited'} "
          f"{report['machine']['blas_env']}; load average {report['machine']['load_start']}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_vs_torch.") as tmp:
        ceiling_before = sgemm_ceiling(env, tmp)
        for name in a.configs.split(","):
            V, H, B, T, _ = CONFIGS[name]
            corpus = os.path.join(tmp, f"synthetic_V{V}.txt")
            write_corpus(corpus, V)
            common = ["--corpus", corpus, "--hidden", str(H), "--batch", str(B), "--seq-len", str(T),
                      "--steps", str(steps[name]), "--json"]
            jobs = [("tapegrad", [char_gru, "train", *common, "--checkpoint", ""], env)]
            for label, threads, extra in TORCH_VARIANTS + ([ACTIVE_T2] if a.active_t2 else []):
                jobs.append((f"torch-{label}", ["/usr/bin/python3", torch_script, *common, "--threads", str(threads)],
                             dict(env, **extra)))
            results = {label: [] for label, _, _ in jobs}
            for r in range(a.runs):
                order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
                for label, cmd, e in order:
                    out = run_json(cmd, e)
                    if out.get("vocab_size") != V:
                        raise RuntimeError(f"{label}: vocab_size {out.get('vocab_size')} != {V}")
                    results[label].append(out)
                    print(f"  {name} round {r + 1} {label:18s} {out['chars_per_s']:12.0f} chars/s "
                          f"{out['peak_rss_mb']:7.1f} MB", flush=True)
            med = {k: statistics.median(o["chars_per_s"] for o in v) for k, v in results.items()}
            rss = {k: max(o["peak_rss_mb"] for o in v) for k, v in results.items()}
            best_torch = max((k for k in med if k.startswith("torch")), key=lambda k: med[k])
            c = {"V": V, "H": H, "B": B, "T": T, "steps": steps[name], "median_chars_per_s": med,
                 "peak_rss_mb": rss, "best_torch": best_torch,
                 "ratio": med["tapegrad"] / med[best_torch],
                 "rss_ratio": rss["tapegrad"] / rss[best_torch], "runs": results}
            c["tapegrad_gflops"] = flops_per_char(V, H) * med["tapegrad"] * 1e-9
            c["torch_gflops"] = flops_per_char(V, H) * med[best_torch] * 1e-9
            report["configs"][name] = c
        ceiling_after = sgemm_ceiling(env, tmp)

        gc = None
        if not a.no_gradcheck and os.path.exists(gradcheck_bin):
            gc = {"tapegrad_fused": [], "tapegrad_composed": [], "torch": []}
            for r in range(a.runs):
                p = subprocess.run([gradcheck_bin, "--repeat", "1"], env=env, capture_output=True, text=True, check=True)
                for line in p.stdout.splitlines():
                    o = json.loads(line)
                    gc[f"tapegrad_{o['path']}"].append(o)
                p = subprocess.run(["/usr/bin/python3", torch_bench, "--threads", "1"], env=env,
                                   capture_output=True, text=True, check=True)
                for line in p.stdout.splitlines():
                    o = json.loads(line)
                    if o["n_inputs"] == 1546:
                        gc["torch"].append(o)
            gc["median_s"] = {
                "tapegrad_fused": statistics.median(o["seconds"] for o in gc["tapegrad_fused"]),
                "tapegrad_composed": statistics.median(o["seconds"] for o in gc["tapegrad_composed"]),
                "torch": statistics.median(o["gradcheck_s"] for o in gc["torch"]),
            }
            report["gradcheck"] = gc

    ceiling = {t: max(ceiling_before[t]["best"], ceiling_after[t]["best"]) for t in (1, 2)}
    report["sgemm_ceiling_gflops"] = {"2_threads": ceiling[2], "1_thread": ceiling[1],
                                      "before": ceiling_before, "after": ceiling_after}
    report["machine"]["openblas_core"] = ceiling_before[2]["corename"]
    report["machine"]["load_end"] = load_average()

    print(f"\nmachine: {report['machine']['cpu']}, {report['machine']['nproc']} CPUs, OpenBLAS core "
          f"{report['machine']['openblas_core']}; load average start {report['machine']['load_start']} "
          f"end {report['machine']['load_end']}")
    print(f"{'cfg':3s} {'tapegrad c/s':>13s} {'torch c/s':>11s} {'(best)':12s} {'ratio':>6s} {'target':>6s} "
          f"{'tg RSS':>7s} {'torch RSS':>9s} {'RSS ratio':>9s}")
    for name, c in report["configs"].items():
        m = c["median_chars_per_s"]
        print(f"{name:3s} {m['tapegrad']:13.0f} {m[c['best_torch']]:11.0f} {c['best_torch'][6:]:12s} "
              f"{c['ratio']:6.2f} {TARGETS[name]:6.1f} {c['peak_rss_mb']['tapegrad']:7.1f} "
              f"{c['peak_rss_mb'][c['best_torch']]:9.1f} {c['rss_ratio']:9.3f}")
    for name, c in report["configs"].items():
        others = ", ".join(f"{k[6:]} {v:.0f}" for k, v in c["median_chars_per_s"].items() if k.startswith("torch"))
        print(f"  {name}: torch medians by thread setting: {others}")
    print(f"sgemm ceiling (1024^3, best batch): 2 threads {ceiling[2]:.1f} GFLOP/s, 1 thread {ceiling[1]:.1f}")
    if "L" in report["configs"]:
        c = report["configs"]["L"]
        print(f"L: tapegrad {c['tapegrad_gflops']:.1f} GFLOP/s = {100 * c['tapegrad_gflops'] / ceiling[2]:.0f}% "
              f"of the 2-thread ceiling (torch {c['torch_gflops']:.1f} GFLOP/s); flops/char = "
              f"{flops_per_char(c['V'], c['H'])}")
    if report.get("gradcheck"):
        g = report["gradcheck"]["median_s"]
        print(f"gradcheck GRU LM (1,546 inputs, float64): tapegrad fused {g['tapegrad_fused']:.3f} s, composed "
              f"{g['tapegrad_composed']:.3f} s, torch {g['torch']:.3f} s -> {g['torch'] / g['tapegrad_fused']:.1f}x "
              f"(composed {g['torch'] / g['tapegrad_composed']:.1f}x)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
