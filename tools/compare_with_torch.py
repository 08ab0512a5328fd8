#!/usr/bin/python3
"""Train the same char-level GRU with tapegrad and with PyTorch, side by side, in one run.

Both follow the same pipeline (see tools/torch_char_gru.py): one-hot GRU(V->H) + Linear head,
Adam, clip_grad_norm_, truncated BPTT with B streams of T characters, the last 10% of the
corpus held out. Initial weights differ (each framework's own seeded RNG), so the comparison is
statistical: the held-out loss of tapegrad should be within 0.05 nats/char of PyTorch's.
Runs alternate (tapegrad, torch, tapegrad, torch, ...) and each prints one JSON line.

Usage:
  /usr/bin/python3 tools/compare_with_torch.py --build build [--steps 2000] [--hidden 128]
      [--batch 32] [--seq-len 32] [--repeats 1] [--corpus /usr/share/dict/words] [--composed]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--corpus", default="/usr/share/dict/words")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool (different seeds)")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--composed", action="store_true", help="tapegrad: the composed GRU instead of the fused one")
    a = ap.parse_args()

    common = ["--corpus", a.corpus, "--steps", str(a.steps), "--hidden", str(a.hidden), "--batch", str(a.batch),
              "--seq-len", str(a.seq_len), "--lr", str(a.lr), "--clip", str(a.clip), "--json"]
    tg_bin = os.path.join(a.build, "examples", "char_gru")
    results = {"tapegrad": [], "pytorch": []}
    for r in range(a.repeats):
        seed = str(r)
        tg = [tg_bin, "train", *common, "--seed", seed, "--checkpoint", ""]
        if a.composed:
            tg.append("--composed")
        results["tapegrad"].append(run(tg))
        print("tapegrad", json.dumps(results["tapegrad"][-1]), file=sys.stderr)
        pt = ["/usr/bin/python3", os.path.join(HERE, "torch_char_gru.py"), *common, "--seed", seed,
              "--threads", str(a.torch_threads)]
        results["pytorch"].append(run(pt))
        print("pytorch ", json.dumps(results["pytorch"][-1]), file=sys.stderr)

    def med(tool, key):
        return statistics.median(r[key] for r in results[tool])

    print(f"config: corpus={a.corpus} H={a.hidden} B={a.batch} T={a.seq_len} steps={a.steps} lr={a.lr} "
          f"clip={a.clip} repeats={a.repeats} (medians)")
    print(f"{'':10} {'train loss':>11} {'held-out':>10} {'chars/s':>10} {'seconds':>8} {'peak RSS MB':>12}")
    for tool in ("tapegrad", "pytorch"):
        print(f"{tool:10} {med(tool, 'train_loss'):11.4f} {med(tool, 'heldout_loss'):10.4f} "
              f"{med(tool, 'chars_per_s'):10.0f} {med(tool, 'seconds'):8.1f} {med(tool, 'peak_rss_mb'):12.0f}")
    diff = med("tapegrad", "heldout_loss") - med("pytorch", "heldout_loss")
    speed = med("tapegrad", "chars_per_s") / med("pytorch", "chars_per_s")
    print(f"held-out difference (tapegrad - pytorch): {diff:+.4f} nats/char "
          f"({'within' if abs(diff) <= 0.05 else 'NOT within'} 0.05); speed ratio {speed:.2f}x")
    return 0 if abs(diff) <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
