#!/usr/bin/python3
"""PyTorch interchange, checked with PyTorch itself (CI runs this; the ctest suite needs no torch).

    /usr/bin/python3 tools/check_torch_interchange.py BUILD_DIR

1. README's PyTorch snippets, extracted from README.md and run as written, on the checkpoints that
   `char_gru train` (2 layers) and `char_gru demo` just wrote: strict load_state_dict, and
   PyTorch's log-probabilities equal to `char_gru score --json` (1e-5); the PyTorch model written
   back by README's second snippet scores the same in tapegrad.
2. A PyTorch-made checkpoint whose vocabulary is in first-seen (unsorted) order: `gru_gates --json`
   gives PyTorch's gates r, z, n, h for every step and both layers, `char_gru score --json`
   PyTorch's log-probabilities.
3. docs/pytorch-to-tapegrad.md's MLP blocks, run as written: `state_dict save` → PyTorch
   load_state_dict → np.savez → `state_dict run --json` equals PyTorch's output.
Exits non-zero on the first mismatch.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(path, lang, after=None):
    """The fenced code blocks of `lang` in a Markdown file (after the heading `after`)."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    if after:
        text = text[text.index(after):]
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def run(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r.stdout


def check_close(what, a, b, tol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        sys.exit(f"FAILED: {what}: shapes {a.shape} vs {b.shape}")
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    if not err <= tol:
        sys.exit(f"FAILED: {what}: max |diff| {err:.3g} > {tol}")
    print(f"ok   {what}: max |diff| {err:.2e}")


def torch_log_probs(m, vocab, text):
    """log p(text[t] | text[:t]) for t = 1..n-1 with PyTorch's CharGRU (one-hot inputs)."""
    index = {int(c): i for i, c in enumerate(vocab)}
    ids = [index[ord(ch)] for ch in text]
    V = len(vocab)
    x = torch.nn.functional.one_hot(torch.tensor(ids[:-1]), V).to(m.head.weight.dtype)[None]
    with torch.no_grad():
        out, _ = m.gru(x)
        lp = torch.log_softmax(m.head(out[0]), dim=-1)
    return [float(lp[t, ids[t + 1]]) for t in range(len(ids) - 1)]


def torch_gates(m, vocab, text, layer):
    """r, z, n, h_prev, h of `layer` at every step, by PyTorch's equations from nn.GRU's weights."""
    index = {int(c): i for i, c in enumerate(vocab)}
    V = len(vocab)
    x = torch.nn.functional.one_hot(torch.tensor([index[ord(ch)] for ch in text]), V).double()
    out = {k: [] for k in ("h_prev", "r", "z", "n", "h")}
    with torch.no_grad():
        for l in range(layer + 1):
            W_ih, W_hh = getattr(m.gru, f"weight_ih_l{l}").double(), getattr(m.gru, f"weight_hh_l{l}").double()
            b_ih, b_hh = getattr(m.gru, f"bias_ih_l{l}").double(), getattr(m.gru, f"bias_hh_l{l}").double()
            H = W_hh.shape[1]
            h = torch.zeros(H, dtype=torch.float64)
            hs = []
            for t in range(x.shape[0]):
                gi, gh = W_ih @ x[t] + b_ih, W_hh @ h + b_hh
                r = torch.sigmoid(gi[:H] + gh[:H])
                z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
                n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
                h_new = (1 - z) * n + z * h
                if l == layer:
                    for k, v in (("h_prev", h), ("r", r), ("z", z), ("n", n), ("h", h_new)):
                        out[k].append(v.numpy().copy())
                h = h_new
                hs.append(h)
            x = torch.stack(hs)
        # The hand-written equations must be nn.GRU's own.
        ref, _ = m.gru(torch.nn.functional.one_hot(
            torch.tensor([index[ord(ch)] for ch in text]), V).to(m.head.weight.dtype)[None])
    if layer == m.gru.num_layers - 1:
        check_close(f"hand-written GRU equations = nn.GRU (layer {layer})",
                    np.array(out["h"]), ref[0].double().numpy(), 1e-5)
    return out


def readme_snippets(workdir):
    """README's three Python blocks of the checkpoint section, run as written in `workdir`."""
    code = blocks("README.md", "python", after="## Checkpoints and PyTorch, both ways")[:3]
    if len(code) != 3:
        sys.exit("FAILED: README's checkpoint section lost its three Python snippets")
    ns = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for c in code:
            exec(compile(c, "README.md", "exec"), ns)  # noqa: S102 - our own README, run as written
    finally:
        os.chdir(cwd)
    return ns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="a configured and built tapegrad build directory (e.g. build)")
    build = os.path.abspath(ap.parse_args().build)
    char_gru, gru_gates = f"{build}/examples/char_gru", f"{build}/examples/gru_gates"
    for exe in (char_gru, gru_gates, f"{build}/examples/state_dict"):
        if not os.access(exe, os.X_OK):
            ap.error(f"{exe}: no such program (is {build} a built tapegrad build directory?)")
    tmp = tempfile.mkdtemp(prefix="tapegrad_interchange_")
    try:
        words = ["gate", "update", "reset", "candidate", "hidden", "state", "grad", "tape", "unit"]
        rng = np.random.default_rng(0)
        corpus = "".join(words[i] + "\n" for i in rng.integers(0, len(words), 3000))
        with open(f"{tmp}/corpus.txt", "w") as f:
            f.write(corpus)
        text = "update\ngate\nreset\nhidden\nstate\ncandidate\n"

        # ---- 1. README's snippets on what char_gru train and char_gru demo wrote ----
        for name, cmd in [
            ("train", [char_gru, "train", "--corpus", "corpus.txt", "--steps", "30", "--hidden", "16",
                       "--layers", "2", "--checkpoint", "model.npz", "--json"]),
            ("demo", [char_gru, "demo", "--corpus", "corpus.txt", "--steps", "20", "--checkpoint",
                      "model.npz", "--text", text]),
        ]:
            work = f"{tmp}/{name}"
            os.makedirs(work)
            shutil.copy(f"{tmp}/corpus.txt", work)
            run(cmd, work)
            ns = readme_snippets(work)  # raises on any unexpected or missing key (strict)
            print(f"ok   README snippets: strict load_state_dict of the {name} checkpoint, and back")
            m, vocab = ns["m"], ns["d"]["vocab"]
            ours = json.loads(run([char_gru, "score", "--checkpoint", "model.npz", "--text", text, "--json"], work))
            check_close(f"{name}: PyTorch log-probs = char_gru score", torch_log_probs(m, vocab, text),
                        ours["log_probs"], 1e-5)
            back = json.loads(run([char_gru, "score", "--checkpoint", "from_torch.npz", "--text", text,
                                   "--json"], work))
            check_close(f"{name}: from_torch.npz scores the same", back["log_probs"], ours["log_probs"], 0)

        # ---- 2. A PyTorch-made model with its vocabulary in first-seen order ----
        torch.manual_seed(1)
        seen = []
        for ch in corpus:
            if ord(ch) not in seen:
                seen.append(ord(ch))
        vocab = np.array(seen, dtype=np.int32)
        assert list(vocab) != sorted(vocab), "the test needs an unsorted vocabulary"
        ns = {}
        exec(compile(blocks("README.md", "python", after="## Checkpoints and PyTorch, both ways")[0],
                     "README.md", "exec"), ns)
        m = ns["CharGRU"](len(vocab), 12, 2)
        work = f"{tmp}/unsorted"
        os.makedirs(work)
        np.savez(f"{work}/torch_model.npz", vocab=vocab,
                 **{k: v.detach().numpy() for k, v in m.state_dict().items()})
        ours = json.loads(run([char_gru, "score", "--checkpoint", "torch_model.npz", "--text", text, "--json"], work))
        check_close("unsorted vocab: char_gru score = PyTorch", ours["log_probs"], torch_log_probs(m, vocab, text), 1e-5)
        steps = ",".join(str(t) for t in range(1, len(text) + 1))
        for layer in (0, 1):
            g = json.loads(run([gru_gates, "--checkpoint", "torch_model.npz", "--text", text, "--steps", steps,
                                "--layer", str(layer), "--json"], work))
            ref = torch_gates(m, vocab, text, layer)
            for k in ("h_prev", "r", "z", "n", "h"):
                check_close(f"unsorted vocab: gru_gates {k} layer {layer} = PyTorch",
                            [s[k] for s in g["steps"]], ref[k], 2e-6)

        # ---- 3. docs/pytorch-to-tapegrad.md's MLP, both ways, as written ----
        work = f"{tmp}/mlp"
        os.makedirs(work)
        doc = "docs/pytorch-to-tapegrad.md"
        section = "## A state dict both ways: a small MLP"
        sh = blocks(doc, "sh", after=section)
        py = blocks(doc, "python", after=section)
        for line in sh[0].splitlines():
            subprocess.run(line.replace("build/", build + "/", 1), shell=True, cwd=work, check=True)
        ns = {}
        cwd = os.getcwd()
        os.chdir(work)
        try:
            exec(compile(py[0], doc, "exec"), ns)
        finally:
            os.chdir(cwd)
        out = subprocess.run(sh[1].split("#")[0].replace("build/", build + "/", 1), shell=True, cwd=work,
                             check=True, capture_output=True, text=True).stdout
        x = torch.tensor([[(i - j) / 4 for j in range(4)] for i in range(2)])
        with torch.no_grad():
            check_close("MLP: state_dict run on PyTorch's file = PyTorch's output",
                        json.loads(out)["output"], ns["mlp"](x).numpy(), 1e-6)
        print("all interchange checks passed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
