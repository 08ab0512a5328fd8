#!/usr/bin/env python3
"""Fixtures of the course's assignments (docs/assignments.md), computed with PyTorch.

    /usr/bin/python3 tools/make_assignment_fixtures.py            # every fixture
    /usr/bin/python3 tools/make_assignment_fixtures.py --corpus F # also write the lab's corpus

Writes tests/fixtures/assignments/<name>.npz (float64, uncompressed, fixed zip timestamps:
re-running reproduces the files byte for byte). cmake --install copies them to
share/tapegrad/fixtures/assignments/; a test opens one with
Fixture fx(ctx.fixture("assignments/<name>.npz")).

gru_forms.npz (assignment examples/assignments/gru_forms), sizes B = 3, I = 5, H = 4:
  part 1: x, h, weight_ih (12,5), weight_hh (12,4), bias_ih, bias_hh (12) (rows r|z|n),
          h_new = nn.GRUCell(x, h) (reset after), seed_h_new, grad_<x, h, params> of
          L = sum(h_new * seed_h_new).
  part 2: the course's cell computed with explicit torch ops (no nn module):
          c_prev (3,4), W_u, W_r, W_c (4, 4+5) acting on [c_prev, x], b_u, b_r, b_c (4),
          Γu = σ(W_u [c_prev, x] + b_u), Γr = σ(W_r [c_prev, x] + b_r),
          c~ = tanh(W_c [Γr ⊙ c_prev, x] + b_c), c = Γu ⊙ c~ + (1 − Γu) ⊙ c_prev;
          c_new, seed_c_new, grad_<c_prev, x, W_u, b_u, W_r, b_r, W_c, b_c> (grad of x: grad_x_course).
  part 3: r1_weight_ih, r1_weight_hh, r1_bias_ih, r1_bias_hh: part 1's weights with the reset
          gate's rows of both weights zeroed and b_ir = 40 (so r = σ(40) = 1 in float64);
          r1_h_new = nn.GRUCell with those weights on (x, h).

The gradient-flow lab's corpus (examples/assignments/gradient_flow_lab/corpus.txt) is generated
here too (--corpus PATH); its checkpoint is made from it with tapegrad's own trainer:
    build/examples/char_gru train --steps 300 --hidden 32 --corpus corpus.txt --checkpoint model.npz
"""
import argparse
import io
import os
import sys
import zipfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "assignments")


def save_npz(path, arrays):
    """numpy.savez's format, with a fixed timestamp so that the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, buf.getvalue())


def U(rng, shape, scale=0.5):
    return rng.uniform(-scale, scale, size=shape).astype(np.float64)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def add_seeded(out, rng, name, y, params, leaves):
    """Adds params, name = y, seed_<name> ~ U(±1) and grad_<k> of L = sum(y * seed) for every
    k in params (leaves[k] is its leaf tensor) to out."""
    seed = U(rng, tuple(y.shape), 1.0)
    (y * torch.tensor(seed)).sum().backward()
    out.update(params)
    out[name] = y.detach().numpy()
    out["seed_" + name] = seed
    for k in params:
        out["grad_" + k] = leaves[k].grad.numpy()


def fx_gru_forms():
    rng = np.random.default_rng(1515)
    B, I, H = 3, 5, 4
    out = {}
    # ---- part 1: PyTorch's nn.GRUCell -------------------------------------------------------
    p1 = {"x": U(rng, (B, I)), "h": U(rng, (B, H)), "weight_ih": U(rng, (3 * H, I)),
          "weight_hh": U(rng, (3 * H, H)), "bias_ih": U(rng, (3 * H,)), "bias_hh": U(rng, (3 * H,))}
    t = {k: leaf(v) for k, v in p1.items()}
    cell = torch.nn.GRUCell(I, H).double()
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, k).copy_(torch.tensor(p1[k]))
    # functional form with the same math as nn.GRUCell, so the weights get gradients as leaves
    h_new = torch._VF.gru_cell(t["x"], t["h"], t["weight_ih"], t["weight_hh"], t["bias_ih"], t["bias_hh"])
    with torch.no_grad():
        assert torch.allclose(h_new, cell(t["x"], t["h"]), atol=1e-15, rtol=0)
    add_seeded(out, rng, "h_new", h_new, p1, t)
    # ---- part 2: the course's cell, explicit ops ---------------------------------------------
    p2 = {"c_prev": U(rng, (B, H)), "W_u": U(rng, (H, H + I)), "b_u": U(rng, (H,)),
          "W_r": U(rng, (H, H + I)), "b_r": U(rng, (H,)), "W_c": U(rng, (H, H + I)), "b_c": U(rng, (H,))}
    c = {k: leaf(v) for k, v in p2.items()}
    xc = leaf(p1["x"])
    cx = torch.cat([c["c_prev"], xc], 1)
    gu = torch.sigmoid(cx @ c["W_u"].T + c["b_u"])
    gr = torch.sigmoid(cx @ c["W_r"].T + c["b_r"])
    ct = torch.tanh(torch.cat([gr * c["c_prev"], xc], 1) @ c["W_c"].T + c["b_c"])
    c_new = gu * ct + (1 - gu) * c["c_prev"]
    add_seeded(out, rng, "c_new", c_new, p2, c)
    out["grad_x_course"] = xc.grad.numpy()
    # ---- part 3: r ≡ 1 ------------------------------------------------------------------------
    r1 = {k: p1[k].copy() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    r1["weight_ih"][:H] = 0
    r1["weight_hh"][:H] = 0
    r1["bias_ih"][:H] = 40.0
    r1["bias_hh"][:H] = 0
    with torch.no_grad():
        for k in r1:
            getattr(cell, k).copy_(torch.tensor(r1[k]))
        r = torch.sigmoid(torch.tensor(r1["bias_ih"][:H]))
        assert bool((r == 1).all())
        out["r1_h_new"] = cell(torch.tensor(p1["x"]), torch.tensor(p1["h"])).numpy()
    for k, v in r1.items():
        out["r1_" + k] = v
    return out


def lab_corpus():
    """Pseudo-words from 12 letters, one per line: a small alphabet keeps the checkpoint small."""
    rng = np.random.default_rng(42)
    cons, vow = "bdklmnrst", "aeo"
    words = []
    for _ in range(1500):
        n = int(rng.integers(1, 4))
        w = "".join(cons[rng.integers(len(cons))] + vow[rng.integers(len(vow))] for _ in range(n))
        if rng.random() < 0.5:
            w += cons[rng.integers(len(cons))]
        words.append(w)
    return "\n".join(words) + "\n"


FIXTURES = {"gru_forms": fx_gru_forms}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="one fixture name")
    ap.add_argument("--corpus", help="also write the gradient-flow lab's corpus to this file")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for name, fn in FIXTURES.items():
        if a.only and a.only != name:
            continue
        path = os.path.join(OUT, name + ".npz")
        save_npz(path, fn())
        print("wrote", os.path.relpath(path, ROOT))
    if a.corpus:
        with open(a.corpus, "w") as f:
            f.write(lab_corpus())
        print("wrote", a.corpus)


if __name__ == "__main__":
    sys.exit(main())
