#!/usr/bin/python3
"""PyTorch's side of the gradcheck timing: torch.autograd.gradcheck (float64, central differences)
of a small GRU language model, the same model bench/gradcheck_gru_lm.cpp checks in tapegrad.

    /usr/bin/python3 tools/torch_gradcheck_gru_lm.py [--threads 1]

Model: one-hot inputs (V), a GRU cell written out with PyTorch's equations (r, z, n; reset after
the hidden matmul), a linear read-out and the mean cross-entropy; every parameter and h_0 is an
input of the check. Sizes V=10, H=16, B=2, T=8: 1,546 inputs. Prints one JSON line:
{"n_inputs", "gradcheck_ok", "gradcheck_s"}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    V, H, B, T = 10, 16, 2, 8
    bound = H ** -0.5
    f64 = torch.float64

    def param(*shape):
        return torch.empty(*shape, dtype=f64).uniform_(-bound, bound).requires_grad_()

    W_ih, W_hh, b_ih, b_hh = param(3 * H, V), param(3 * H, H), param(3 * H), param(3 * H)
    W_out, b_out = param(V, H), param(V)
    h0 = torch.zeros(B, H, dtype=f64, requires_grad=True)
    ids = torch.randint(0, V, (B, T + 1))
    x, y = F.one_hot(ids[:, :T], V).to(f64), ids[:, 1:]

    def loss(W_ih, W_hh, b_ih, b_hh, W_out, b_out, h0):
        h, states = h0, []
        for t in range(T):
            ir, iz, in_ = (x[:, t] @ W_ih.t() + b_ih).chunk(3, dim=1)
            hr, hz, hn = (h @ W_hh.t() + b_hh).chunk(3, dim=1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            h = (1 - z) * n + z * h
            states.append(h)
        logits = torch.stack(states, dim=1) @ W_out.t() + b_out
        return F.cross_entropy(logits.reshape(B * T, V), y.reshape(B * T))

    inputs = (W_ih, W_hh, b_ih, b_hh, W_out, b_out, h0)
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
    seconds = time.perf_counter() - start
    print(json.dumps({"n_inputs": sum(p.numel() for p in inputs), "gradcheck_ok": bool(ok),
                      "gradcheck_s": round(seconds, 3)}))


if __name__ == "__main__":
    main()
