#!/usr/bin/python3
"""PyTorch's side of tools/bench_vs_torch.py's `primitives` section: the cases of
bench/primitives.cpp (same names, shapes and input distributions), each op forward + backward
(a fixed random seed gradient; none for a one-element output), the inputs' .grad set to None
after each call. A repeat is a batch of calls lasting at least 20 ms; printed per case: the
median over --repeats of a batch's microseconds per call, one JSON object per line.

  /usr/bin/python3 tools/torch_primitives.py --threads 1 [--repeats 7] [--case NAME] [--list]
"""
import argparse
import json
import statistics
import sys
import time

import torch

N, D = 256, 1024


def make_cases():
    g = torch.Generator().manual_seed(0)

    def normal(*s):
        return torch.randn(*s, generator=g).requires_grad_()

    def positive(*s):  # |N(0, 1)| + 0.5
        return (torch.randn(*s, generator=g).abs() + 0.5).requires_grad_()

    targets = torch.tensor([i * 37 % D for i in range(N)])
    rows = torch.tensor([i * 7 % N for i in range(512)])
    columns = torch.tensor([i * 13 % D for i in range(N * 16)]).reshape(N, 16)
    mask = torch.randn(N, D, generator=g) > 0
    causal = torch.randn(128, 128, generator=g) > 0
    ids = torch.tensor([i * 7919 % 1000 for i in range(4096)])

    def chunk4(a):
        c = a.chunk(4, 1)
        return (c[0] + c[1]) + (c[2] + c[3])

    def layernorm(x, w, b):
        c = x - x.mean(1, keepdim=True)
        var = (c * c).mean(1, keepdim=True)
        return c / torch.sqrt(var + 1e-5) * w + b

    F = torch.nn.functional
    return [
        ("add", [normal(N, D), normal(N, D)], lambda a, b: a + b),
        ("add_row", [normal(N, D), normal(D)], lambda a, b: a + b),
        ("add_col", [normal(N, D), normal(N, 1)], lambda a, b: a + b),
        ("sub", [normal(N, D), normal(N, D)], lambda a, b: a - b),
        ("mul", [normal(N, D), normal(N, D)], lambda a, b: a * b),
        ("mul_col", [normal(N, D), normal(N, 1)], lambda a, b: a * b),
        ("div", [normal(N, D), positive(N, D)], lambda a, b: a / b),
        ("sum_all", [normal(N, D)], lambda a: a.sum()),
        ("sum_ax0", [normal(N, D)], lambda a: a.sum(0)),
        ("sum_ax1", [normal(N, D)], lambda a: a.sum(1)),
        ("mean_ax1_keep", [normal(N, D)], lambda a: a.mean(1, keepdim=True)),
        ("mean_3d_ax02", [normal(64, 32, 128)], lambda a: a.mean((0, 2))),
        ("max_ax1", [normal(N, D)], lambda a: a.max(1)[0]),
        ("max_ax0", [normal(N, D)], lambda a: a.max(0)[0]),
        ("softmax_last", [normal(N, D)], lambda a: torch.softmax(a, -1)),
        ("softmax_ax0", [normal(N, D)], lambda a: torch.softmax(a, 0)),
        ("log_softmax", [normal(N, D)], lambda a: torch.log_softmax(a, -1)),
        ("cross_entropy", [normal(N, D)], lambda a: F.cross_entropy(a, targets)),
        ("mse", [normal(N, D), normal(N, D)], F.mse_loss),
        ("relu", [normal(N, D)], torch.relu),
        ("sigmoid", [normal(N, D)], torch.sigmoid),
        ("tanh", [normal(N, D)], torch.tanh),
        ("exp", [normal(N, D)], torch.exp),
        ("log", [positive(N, D)], torch.log),
        ("sqrt", [positive(N, D)], torch.sqrt),
        ("pow2", [normal(N, D)], lambda a: a ** 2.0),
        ("pow3", [normal(N, D)], lambda a: a ** 3.0),
        ("abs", [normal(N, D)], torch.abs),
        ("clamp", [normal(N, D)], lambda a: a.clamp(-0.5, 0.5)),
        ("where", [normal(N, D), normal(N, D)], lambda a, b: torch.where(mask, a, b)),
        ("masked_fill", [normal(N, D)], lambda a: a.masked_fill(mask, 0.0)),
        ("masked_fill_bcast", [normal(16, 128, 128)], lambda a: a.masked_fill(causal, -1e9)),
        ("transpose", [normal(N, D)], lambda a: a.t().contiguous()),
        ("permute3d", [normal(32, 64, 128)], lambda a: a.permute(2, 0, 1).contiguous()),
        ("narrow_ax1", [normal(N, D)], lambda a: a.narrow(1, 100, 512).contiguous()),
        ("select_ax1", [normal(N, D)], lambda a: a.select(1, 7).contiguous()),
        ("concat_ax1", [normal(N, 256) for _ in range(4)], lambda *v: torch.cat(v, 1)),
        ("stack_ax0", [normal(N, 256) for _ in range(4)], lambda *v: torch.stack(v, 0)),
        ("chunk4_ax1", [normal(N, D)], chunk4),
        ("index_select", [normal(N, D)], lambda a: a.index_select(0, rows)),
        ("gather_ax1", [normal(N, D)], lambda a: a.gather(1, columns)),
        ("matmul", [normal(N, D), normal(D, 256)], lambda a, b: a @ b),
        ("bmm", [normal(16, 128, 64), normal(16, 64, 128)], lambda a, b: a @ b),
        ("linear", [normal(N, D), normal(512, D), normal(512)], F.linear),
        ("linear_3d", [normal(16, 128, 256), normal(256, 256), normal(256)], F.linear),
        ("layernorm", [normal(N, D), normal(D), normal(D)], layernorm),
        # ---- more of what user models do (session 34) ----
        ("neg", [normal(N, D)], torch.neg),
        ("rsub", [normal(N, D)], lambda a: 1.0 - a),
        ("add_scalar", [normal(N, D)], lambda a: a + 0.5),
        ("mul_scalar", [normal(N, D)], lambda a: a * 0.5),
        ("div_row", [normal(N, D), positive(D)], lambda a, b: a / b),
        ("pow_tensor", [positive(N, D), normal(N, D)], torch.pow),
        ("broadcast_to", [normal(D)], lambda a: a.expand(N, D).contiguous()),
        ("cast_f64", [normal(N, D)], lambda a: a.double()),
        ("reshape", [normal(N, D)], lambda a: a.reshape(4 * N, -1)),
        ("concat_ax0", [normal(64, D) for _ in range(4)], lambda *v: torch.cat(v, 0)),
        ("mean_ax0", [normal(N, D)], lambda a: a.mean(0)),
        ("softmax_3d", [normal(16, 128, 128)], lambda a: torch.softmax(a, -1)),
        ("embedding", [normal(1000, 256)], lambda w: F.embedding(ids, w)),
        ("index_add", [normal(512, D)], lambda g: torch.zeros(N, D).index_add(0, rows, g)),
        ("scatter_add", [normal(N, 16)], lambda g: torch.zeros(N, D).scatter_add(1, columns, g)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--case", default="")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.repeats <= 1000:
        sys.exit("torch_primitives: --repeats needs a whole number from 1 to 1000")
    torch.set_num_threads(a.threads)
    cases = make_cases()
    if a.list:
        for name, _, _ in cases:
            print(name)
        return
    if a.case and a.case not in [c[0] for c in cases]:
        sys.exit(f"torch_primitives: no case {a.case!r} (--list names them)")
    g = torch.Generator().manual_seed(1)
    for name, inputs, f in cases:
        if a.case and name != a.case:
            continue
        first = f(*inputs)
        seed = None if first.numel() == 1 else torch.randn(first.shape, generator=g, dtype=first.dtype)

        def call():
            out = f(*inputs)
            out.backward(seed)
            for x in inputs:
                x.grad = None

        call()  # warm-up
        us = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            calls = 0
            while True:
                call()
                calls += 1
                dt = time.perf_counter() - t0
                if dt >= 0.02:
                    break
            us.append(dt / calls * 1e6)
        print(json.dumps({"case": name, "us": statistics.median(us), "repeats_us": us}), flush=True)


if __name__ == "__main__":
    main()
