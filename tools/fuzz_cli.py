#!/usr/bin/python3
"""Random command lines against every example program, for a bounded time.

    python3 tools/fuzz_cli.py BUILD_DIR [SECONDS=120] [SEED=0]

Each run picks a program and builds its arguments from that program's own flags and a pool of
hostile values (nan, inf, negative and huge numbers, 2^64, empty strings, quotes, backticks,
`system`, newlines, ';', directories, FIFOs, /dev/zero, /dev/null, missing and unwritable paths,
broken checkpoints). A run fails the fuzzer when the program dies from a signal (other than the
timeout), prints a sanitizer report, leaves a temporary file behind, writes outside its
scratch directory, or runs a shell command (a planted `touch PWNED` appears). Exit codes 0, 1, 2
and 3 are all fine: the point is that nothing crashes, hangs or runs. Meant for a sanitizer
build (CI runs it on build-asan); any build works.
"""
import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

PROGRAMS = {
    "char_gru": {
        "sub": ["train", "sample", "score", "demo", "bogus", ""],
        "flags": ["--corpus", "--hidden", "--layers", "--seq-len", "--batch", "--steps", "--lr", "--clip",
                  "--clip-value", "--seed", "--dtype", "--checkpoint", "--save-every", "--resume",
                  "--sample-every", "--embed", "--embed-dim", "--json", "--composed", "--n", "--temperature",
                  "--prefix", "--max-len", "--text", "--help"],
    },
    "gru_gates": {"sub": [""], "flags": ["--checkpoint", "--text", "--steps", "--layer", "--units",
                                         "--convention", "--json", "--plot", "--help"]},
    "gradient_flow": {"sub": [""], "flags": ["--cell", "--hidden", "--steps", "--update-bias", "--weight-scale",
                                             "--seed", "--json", "--plot", "--checkpoint", "--text", "--layer"]},
    "tape_graph": {"sub": [""], "flags": ["--dot", "--help"]},
    "custom_op": {"sub": [""], "flags": ["--buggy", "--help"]},
    "manual_backprop": {"sub": [""], "flags": ["--help"]},
    "hvp": {"sub": [""], "flags": ["--help"]},
    "state_dict": {"sub": ["save", "run", ""], "flags": ["--json", "--seed"]},
}

NUMBERS = ["0", "1", "2", "3", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e-308", "4294967296",
           "18446744073709551615", "18446744073709551616", "99999999999999999999999", "0x10", "1.5", "",
           " ", "1,2", "0:-1", "5:3", "0:1", "33,34", "1,0", "-3,2"]
STRINGS = ["'", '"', "`touch PWNED`", "$(touch PWNED)", "a'; system 'touch PWNED'; set output 'b",
           "x\nsystem 'touch PWNED'\n", ";", "\\", "%s%n", "\x7f", "é€𝄞", "\ud7ff", "gate", "the\nquick\n",
           "a" * 5000, "course", "pytorch", "float64", "float32", "gru", "rnn", "lstm", "all"]


def make_scratch(root, build):
    s = {"dir": root + "/dir", "fifo": root + "/fifo", "empty": root + "/empty.txt",
         "corpus": root + "/corpus.txt", "ck": root + "/model.npz", "bad_ck": root + "/bad.npz",
         "ro": root + "/ro/x.npz"}
    os.makedirs(s["dir"])
    os.makedirs(root + "/ro")
    os.mkfifo(s["fifo"])
    open(s["empty"], "w").close()
    with open(s["corpus"], "w") as f:
        f.write("gate\nupdate\nreset\nhidden\nstate\n" * 200)
    subprocess.run([build + "/examples/char_gru", "train", "--corpus", s["corpus"], "--steps", "3", "--hidden", "8",
                    "--batch", "4", "--seq-len", "8", "--checkpoint", s["ck"]], capture_output=True, check=True)
    with open(s["bad_ck"], "wb") as f:
        f.write(open(s["ck"], "rb").read()[:300])
    os.chmod(root + "/ro", 0o555)
    return s


def paths(s, work):
    return [s["dir"], s["fifo"], s["empty"], s["corpus"], s["ck"], s["bad_ck"], s["ro"], "/dev/zero",
            "/dev/null", "/nonexistent/x.npz", "", work + "/out.npz", work + "/out.png", work + "/p'q.png",
            work + "/a`touch PWNED`.svg", work + "/x.dot", s["ck"] + ".resume.npz"]


def positive_seconds(text):
    v = float(text)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="a built tapegrad build directory (a sanitizer build is best)")
    ap.add_argument("seconds", nargs="?", type=positive_seconds, default=120.0, help="how long to fuzz (120)")
    ap.add_argument("seed", nargs="?", type=int, default=0, help="seed of the random command lines (0)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    missing = [p for p in PROGRAMS if not os.access(f"{build}/examples/{p}", os.X_OK)]
    if missing:
        ap.error(f"{build}/examples/ lacks {', '.join(missing)} (is {build} a built tapegrad build directory?)")
    seconds = a.seconds
    rng = random.Random(a.seed)
    root = tempfile.mkdtemp(prefix="tapegrad_fuzz_cli_")
    failures, runs = [], 0
    try:
        s = make_scratch(root, build)
        originals = {name: open(s[name], "rb").read() for name in ("corpus", "ck")}
        deadline = time.time() + seconds
        while time.time() < deadline:
            prog = rng.choice(sorted(PROGRAMS))
            spec = PROGRAMS[prog]
            work = tempfile.mkdtemp(dir=root, prefix="run_")
            args = [build + "/examples/" + prog]
            sub = rng.choice(spec["sub"])
            if sub:
                args.append(sub)
            pool = NUMBERS + STRINGS + paths(s, work)
            for _ in range(rng.randint(0, 6)):
                r = rng.random()
                if r < 0.55:
                    args += [rng.choice(spec["flags"]), rng.choice(pool)]
                elif r < 0.8:
                    args.append(rng.choice(spec["flags"]))
                else:
                    args.append(rng.choice(pool))
            args = [a.replace("\ud7ff", "\u00e9") for a in args]
            if prog == "char_gru" and sub in ("train", "demo") and "--steps" not in args:
                args += ["--steps", "3", "--corpus", s["corpus"]]  # keep runs short
            env = dict(os.environ, TMPDIR=work)
            t0 = time.time()
            try:
                p = subprocess.run(args, cwd=work, capture_output=True, timeout=60, env=env,
                                   stdin=subprocess.DEVNULL)
                code, err = p.returncode, p.stderr.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                code, err = "timeout", ""
            runs += 1
            problems = []
            if code == "timeout":
                if time.time() - t0 < 59:
                    problems.append("timeout")
            elif code < 0 or code >= 128 and code != 130:
                problems.append(f"killed by signal / exit {code}")
            if "Sanitizer" in err or "runtime error:" in err:
                problems.append("sanitizer report")
            for d in (work, s["dir"], os.getcwd()):
                if os.path.exists(os.path.join(d, "PWNED")):
                    problems.append(f"a shell command ran (PWNED in {d})")
            leftovers = [f for f in os.listdir(work) if ".tmp." in f or f.startswith("tapegrad_plot_")]
            if leftovers:
                problems.append(f"temporary files left: {leftovers}")
            # This run's inputs: what follows --corpus, --resume, and --checkpoint where it is read.
            reads_ck = prog in ("gru_gates", "gradient_flow") or sub in ("sample", "score")
            inputs = {args[i + 1] for i in range(len(args) - 1)
                      if args[i] in ("--corpus", "--resume") or (args[i] == "--checkpoint" and reads_ck)}
            for name in ("corpus", "ck"):
                if not os.path.exists(s[name]) or open(s[name], "rb").read() != originals[name]:
                    if s[name] in inputs:
                        problems.append(f"an input was overwritten: {s[name]}")
                    with open(s[name], "wb") as f:  # restore it for the next runs
                        f.write(originals[name])
            if problems:
                failures.append((args, code, problems, err[-2000:]))
                shown = [a if len(a) < 80 else a[:40] + f"...({len(a)} chars)" for a in args]
                print(f"FAIL {problems}: {shown!r} (exit {code})\n{err[-2000:]}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        os.chmod(root + "/ro", 0o755) if os.path.isdir(root + "/ro") else None
        shutil.rmtree(root, ignore_errors=True)
    print(f"fuzz_cli: {runs} runs in {seconds:.0f} s, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
