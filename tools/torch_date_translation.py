#!/usr/bin/python3
"""PyTorch twin of examples/date_translation: the same date generator recipe, model, optimizer,
schedule, clipping and batching (its own random numbers: compare accuracy and speed, not digits).

    /usr/bin/python3 tools/torch_date_translation.py [--steps 1000] [--seed 0] [--threads 1]

Prints {"accuracy", "steps", "seconds", "peak_rss_mb"} as JSON.
"""
import argparse
import json
import math
import random
import resource
import time

import torch
import torch.nn as nn

IN_CHARS = "\1 ,0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # \1 = padding
OUT_CHARS = "0123456789-"  # id 11 = start of the output
OUT_LEN, E, H, S, BATCH = 10, 32, 64, 128, 64
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]


def make_date(rng):
    y, m = 1900 + rng.randrange(200), 1 + rng.randrange(12)
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    d = 1 + rng.randrange([31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1])
    yy = y - 1 if m < 3 else y  # Sakamoto's day of the week
    W = WEEKDAYS[(yy + yy // 4 - yy // 100 + yy // 400 + [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4][m - 1] + d) % 7]
    M, Y, D = MONTHS[m - 1], str(y), str(d)
    th = "st" if d % 10 == 1 and d != 11 else "nd" if d % 10 == 2 and d != 12 else "rd" if d % 10 == 3 and d != 13 else "th"
    formats = [f"{D} {M} {Y}", f"{d:02} {M} {Y}", f"{M} {D}, {Y}", f"{W} {D} {M} {Y}", f"{W}, {M} {D}, {Y}",
               f"{D} {M[:3]} {Y}", f"{M[:3]} {D} {Y}", f"the {D}{th} of {M} {Y}"]
    s = formats[rng.randrange(8)]
    style = rng.randrange(3)  # lower, Capitalized Words, UPPER
    s = s.upper() if style == 2 else " ".join(w[:1].upper() + w[1:] for w in s.split(" ")) if style == 1 else s
    return s, f"{y}-{m:02}-{d:02}"


class DateTranslator(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(IN_CHARS), E)
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.out_embed = nn.Embedding(len(OUT_CHARS) + 1, E)
        self.query = nn.Linear(S, 2 * H)
        self.decoder = nn.LSTMCell(E + 2 * H, S)
        self.head = nn.Linear(S + 2 * H, len(OUT_CHARS))

    def forward(self, inputs, targets=None):
        B, length = len(inputs), max(len(s) for s in inputs)
        ids = torch.tensor([[IN_CHARS.index(c) for c in s] + [0] * (length - len(s)) for s in inputs])
        pad = (ids == 0).unsqueeze(1)  # (B, 1, len)
        states, _ = self.encoder(self.embed(ids))  # (B, len, 2H)
        h, c = torch.zeros(B, S), torch.zeros(B, S)
        prev = torch.full((B,), len(OUT_CHARS), dtype=torch.long)
        logits, weights = [], []
        for t in range(OUT_LEN):
            scores = self.query(h).unsqueeze(1) @ states.transpose(1, 2) / math.sqrt(2 * H)
            w = scores.masked_fill(pad, float("-inf")).softmax(-1)
            context = (w @ states).squeeze(1)
            h, c = self.decoder(torch.cat([self.out_embed(prev), context], 1), (h, c))
            logits.append(self.head(torch.cat([h, context], 1)))
            weights.append(w)
            prev = targets[:, t] if targets is not None else logits[-1].argmax(-1)
        return torch.stack(logits, 1), weights


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    test_rng, rng = random.Random(a.seed + 1000003), random.Random(a.seed)
    test, held_out = [], set()
    while len(test) < 1000:
        e = make_date(test_rng)
        if e[0] not in held_out:
            held_out.add(e[0])
            test.append(e)
    model = DateTranslator()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.steps)
    to_ids = lambda batch: torch.tensor([[OUT_CHARS.index(c) for c in iso] for _, iso in batch])
    start = time.perf_counter()
    for _ in range(a.steps):
        batch = []
        while len(batch) < BATCH:
            e = make_date(rng)
            if e[0] not in held_out:
                batch.append(e)
        y = to_ids(batch)
        logits, _ = model([h for h, _ in batch], y)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(OUT_CHARS)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits, _ = model([h for h, _ in test])
        accuracy = (logits.argmax(-1) == to_ids(test)).all(1).float().mean().item()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"accuracy": accuracy, "steps": a.steps, "seconds": seconds, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
