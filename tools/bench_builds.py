#!/usr/bin/python3
"""Two (or more) builds of `char_gru train` against PyTorch in one alternated run: a before/after
measurement of a change, each build's speed given as a ratio to PyTorch measured in the same rounds.

    /usr/bin/python3 tools/bench_builds.py --build before=/tmp/a/build --build after=build \\
        [--configs S,M,L] [--runs 3] [--steps S=2000,M=60,L=15] [--composed] [--json out.json]

Each build is a tapegrad build directory holding examples/char_gru (any commit: the command line
used, `train --corpus F --hidden H --batch B --seq-len T --steps N --json`, has not changed).
The workload, the corpus and PyTorch's side (tools/torch_char_gru.py, one thread and two threads
with passive OpenMP waiting, the better median kept) are those of tools/bench_vs_torch.py. Every
round runs every build and every PyTorch variant for every config, in an order rotated each round;
medians over the rounds are compared. Used for issue 11's "S/M/L ratios before and after the ABI
fix" (docs/performance.md lists the run).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vs_torch as bvt  # noqa: E402  (CONFIGS, write_corpus, run_json, load_average)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="append", required=True, metavar="NAME=DIR",
                    help="a tapegrad build directory, named (repeat for each build)")
    ap.add_argument("--configs", default="S,M,L")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", default="", help="override steps, e.g. S=1000,L=10")
    ap.add_argument("--composed", action="store_true", help="train every build with --composed")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    builds = []
    for spec in a.build:
        if "=" not in spec:
            ap.error(f"--build {spec!r}: expected NAME=DIR")
        name, d = spec.split("=", 1)
        exe = os.path.join(d, "examples", "char_gru")
        if not os.access(exe, os.X_OK):
            ap.error(f"--build {spec!r}: {exe} is not an executable")
        builds.append((name, exe))
    steps = {k: v[4] for k, v in bvt.CONFIGS.items()}
    for kv in filter(None, a.steps.split(",")):
        k, v = kv.split("=")
        steps[k] = int(v)
    configs = [c for c in a.configs.split(",") if c]
    env = dict(os.environ)
    torch_script = os.path.join(bvt.REPO, "tools", "torch_char_gru.py")
    report = {"load_start": bvt.load_average(), "builds": dict(b for b in builds), "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        samples = {c: {} for c in configs}
        for c in configs:
            bvt.write_corpus(os.path.join(tmp, f"{c}.txt"), bvt.CONFIGS[c][0])
        for r in range(a.runs):
            for c in configs:
                V, H, B, T, _ = bvt.CONFIGS[c]
                corpus = os.path.join(tmp, f"{c}.txt")
                common = ["--corpus", corpus, "--hidden", str(H), "--batch", str(B), "--seq-len", str(T),
                          "--steps", str(steps[c]), "--json"]
                jobs = []
                for name, exe in builds:
                    cmd = [exe, "train"] + common + ["--checkpoint", ""]  # write no checkpoint
                    if a.composed:
                        cmd.append("--composed")
                    jobs.append((name, cmd, env))
                for tname, threads, extra in bvt.TORCH_VARIANTS:
                    cmd = ["/usr/bin/python3", torch_script, "--threads", str(threads)] + common
                    jobs.append(("torch-" + tname, cmd, dict(env, **extra)))
                k = r % len(jobs)
                for name, cmd, e in jobs[k:] + jobs[:k]:
                    out = bvt.run_json(cmd, e)
                    cps = out["chars_per_s"]
                    samples[c].setdefault(name, []).append(cps)
                    print(f"round {r + 1} {c} {name:<16} {cps / 1e3:9.1f}k chars/s", flush=True)
        print()
        for c in configs:
            med = {n: statistics.median(v) for n, v in samples[c].items()}
            torch_best_name = max((n for n in med if n.startswith("torch-")), key=lambda n: med[n])
            torch_best = med[torch_best_name]
            row = {"median_chars_per_sec": med, "torch_best": torch_best_name, "samples": samples[c],
                   "ratio": {n: med[n] / torch_best for n, _ in builds}}
            report["configs"][c] = row
            ratios = "  ".join(f"{n} {med[n] / 1e3:.1f}k = {row['ratio'][n]:.2f}x" for n, _ in builds)
            print(f"{c}: torch {torch_best / 1e3:.1f}k ({torch_best_name})  {ratios}")
    report["load_end"] = bvt.load_average()
    print(f"load average {report['load_start'][0]:.1f} -> {report['load_end'][0]:.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
