#!/usr/bin/python3
"""PyTorch twin of examples/adding_problem: the same data recipe, sizes, init scheme, optimizer,
schedule and clipping (its own random numbers: compare MSEs and speed, not digits).

    /usr/bin/python3 tools/torch_adding_problem.py [--steps 3000] [--seed 0] [--threads 1] [--models gru,lstm,rnn]

Prints {"gru": {"test_mse", "seconds"}, "lstm": {...}, "rnn": {...}, "baseline_mse"} as JSON
(only the models asked for).
"""
import argparse
import json
import time

import torch
import torch.nn as nn

T, H, BATCH, TEST = 50, 64, 64, 1000


def make_batch(n, gen):
    values = torch.rand(n, T, generator=gen)
    i = torch.randint(T, (n,), generator=gen)
    j = torch.randint(T - 1, (n,), generator=gen)
    j = j + (j >= i).long()  # two distinct marked steps
    markers = torch.zeros(n, T)
    markers[torch.arange(n), i] = 1.0
    markers[torch.arange(n), j] = 1.0
    x = torch.stack([values, markers], 2)  # (n, T, 2)
    y = (values * markers).sum(1, keepdim=True)  # (n, 1)
    return x, y


class Regressor(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[kind](2, H, batch_first=True)
        self.head = nn.Linear(H, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="gru,lstm,rnn")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    test_x, test_y = make_batch(TEST, torch.Generator().manual_seed(a.seed + 1000003))
    result = {"baseline_mse": nn.functional.mse_loss(torch.ones_like(test_y), test_y).item()}
    for kind in a.models.split(","):
        torch.manual_seed(a.seed)
        gen = torch.Generator().manual_seed(a.seed)  # every model sees the same batches
        model = Regressor(kind)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.steps)
        start = time.perf_counter()
        for _ in range(a.steps):
            x, y = make_batch(BATCH, gen)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            result[kind] = {"test_mse": nn.functional.mse_loss(model(test_x), test_y).item(), "seconds": seconds}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
