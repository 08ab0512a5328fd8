#!/usr/bin/python3
"""PyTorch twin of examples/mlp_spirals: the same spirals, sizes, init scheme, optimizer, schedule
and batching (its own random numbers: compare curves and final accuracy, not digits).

    /usr/bin/python3 tools/torch_mlp_spirals.py [--epochs 200] [--seed 0] [--threads 1]

Prints {"train_loss", "test_accuracy", "epochs", "seconds"} as JSON.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    per_class = 500
    theta = 3.5 * math.pi * torch.arange(per_class, dtype=torch.float32) / per_class
    r = theta / (3.5 * math.pi)
    xs, ys = [], []
    for c in range(2):
        pts = torch.stack([r * torch.cos(theta + math.pi * c), r * torch.sin(theta + math.pi * c)], 1)
        xs.append(pts + 0.02 * torch.randn_like(pts))
        ys.append(torch.full((per_class,), c))
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.randperm(2 * per_class)
    tr, te = order[:800], order[800:]
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(a.epochs):
        perm = tr[torch.randperm(len(tr))]
        epoch_loss = 0.0
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += loss.item() * len(idx) / len(tr)
        sched.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        acc = (model(x[te]).argmax(1) == y[te]).float().mean().item()
    print(json.dumps({"train_loss": epoch_loss, "test_accuracy": acc, "epochs": a.epochs, "seconds": seconds}))


if __name__ == "__main__":
    main()
