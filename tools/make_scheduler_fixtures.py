#!/usr/bin/python3
"""PyTorch's learning rates, step by step, for tests/test_lr_scheduler.cpp.

    /usr/bin/python3 tools/make_scheduler_fixtures.py   # writes tests/fixtures/lr_schedulers.npz

Each entry is the lr after 0, 1, ..., 40 scheduler steps (SGD, base lr 0.5):
  step_lr            StepLR(step_size=7, gamma=0.3)
  cosine             CosineAnnealingLR(T_max=25, eta_min=0.01)   (steps 0..25: PyTorch's closed form)
  warmup             LinearLR(start_factor=0.25, end_factor=1.0, total_iters=10)
"""
import argparse
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "lr_schedulers.npz")


def trace(make, n):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = make(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs, dtype=np.float64)


def main():
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    np.savez(OUT,
             step_lr=trace(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.3), 40),
             cosine=trace(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=25, eta_min=0.01), 25),
             warmup=trace(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                                                      total_iters=10), 40))
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
