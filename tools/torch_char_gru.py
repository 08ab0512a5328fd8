#!/usr/bin/python3
"""PyTorch reference of tapegrad's `char_gru train` demo.

The pipeline below is the specification the C++ demo implements; follow it literally
when changing either side.

  * Corpus read as UTF-8 (bytes decoded strictly, no newline translation).
    vocab = sorted unique code points; one-hot index = position in vocab.
  * split = floor(0.9 * N) characters; train = text[:split], heldout = text[split:].
  * B streams; L = len(train) // B; stream b = train[b*L:(b+1)*L].
    Position p = 0 at start.  Before each step: if p + T + 1 > L (or at the very
    first step) then p = 0 and the hidden state is reset to zeros.  The step uses
    inputs stream[p:p+T], targets stream[p+1:p+T+1] for every stream, then p += T.
    Otherwise the hidden state is carried (detached) from the previous step.
  * Model CharGRU (one-hot inputs), Adam(lr), loss = mean cross-entropy over B*T,
    clip_grad_norm_(clip) if clip > 0, then optimizer step.
  * train_loss = mean loss over the last min(100, steps) steps.
  * heldout_loss = mean cross-entropy (nats/char) of predicting heldout[i] from
    heldout[:i], i = 1..M-1, one stream from h = 0, processed in chunks carrying h.
  * chars_per_s = steps * B * T / training seconds (held-out eval excluded).

Usage:
  /usr/bin/python3 tools/torch_char_gru.py --steps 200 --hidden 64 --json
"""
import argparse
import json
import math
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class CharGRU(nn.Module):
    """The demo's model; its state dict is the checkpoint layout (plus `vocab`)."""

    def __init__(self, V, H, L, embed_dim=None):
        super().__init__()
        if embed_dim:
            self.embed = nn.Embedding(V, embed_dim)
        self.gru = nn.GRU(embed_dim or V, H, L, batch_first=True)
        self.head = nn.Linear(H, V)
        self.V = V

    def forward(self, idx, h=None):
        """idx: int64 (B, T) vocab indices; h: (L, B, H) or None -> (logits (B,T,V), h_n)."""
        if hasattr(self, "embed"):
            x = self.embed(idx)
        else:
            x = F.one_hot(idx, self.V).to(self.head.weight.dtype)
        out, h_n = self.gru(x, h)
        return self.head(out), h_n


def read_corpus(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"error: cannot read corpus {path}: {e}")
    if not text:
        raise SystemExit(f"error: corpus {path} is empty")
    return text


def encode(text):
    """-> (vocab int32 sorted code points, int64 indices of text)."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    vocab = np.unique(cps)
    idx = np.searchsorted(vocab, cps)
    return vocab.astype(np.int32), idx


def make_batches(train_idx, B, T):
    """Generator of (reset, inputs (B,T), targets (B,T)) following the spec."""
    L = len(train_idx) // B
    if L < T + 1:
        raise SystemExit(f"error: train text too short: L={L} < seq_len+1={T + 1}")
    streams = torch.from_numpy(np.asarray(train_idx[: B * L]).reshape(B, L).copy())
    p = 0
    first = True
    while True:
        reset = first
        first = False
        if p + T + 1 > L:
            p = 0
            reset = True
        yield reset, streams[:, p:p + T], streams[:, p + 1:p + T + 1]
        p += T


@torch.no_grad()
def heldout_loss(model, idx, chunk=1024):
    """Mean CE (nats/char) of predicting idx[i] from idx[:i], i=1..M-1, from h=0."""
    M = len(idx)
    if M < 2:
        return float("nan")
    seq = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    h = None
    total = 0.0
    for s in range(0, M - 1, chunk):
        e = min(s + chunk, M - 1)
        logits, h = model(seq[s:e].unsqueeze(0), h)
        total += F.cross_entropy(logits[0], seq[s + 1:e + 1], reduction="sum").item()
    return total / (M - 1)


def train(model, train_idx, steps, B, T, lr, clip, log=None):
    """Runs the training loop; returns (list of losses, seconds)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    H = model.gru.hidden_size
    nl = model.gru.num_layers
    dtype = model.head.weight.dtype
    batches = make_batches(train_idx, B, T)
    losses = []
    h = None
    t0 = time.perf_counter()
    for step in range(steps):
        reset, x, y = next(batches)
        if reset:
            h = torch.zeros(nl, B, H, dtype=dtype)
        logits, h = model(x, h)
        h = h.detach()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if log and (step + 1) % log == 0:
            print(f"step {step + 1}: loss {np.mean(losses[-log:]):.4f}", file=sys.stderr)
    return losses, time.perf_counter() - t0


def save_checkpoint(model, vocab, path):
    arrays = {"vocab": np.asarray(vocab, dtype=np.int32)}
    for k, v in model.state_dict().items():
        arrays[k] = v.detach().cpu().numpy()
    np.savez(path, **arrays)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share/dict/words")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=None,
                    help="write the trained model (checkpoint layout, training dtype)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32

    text = read_corpus(a.corpus)
    vocab, idx = encode(text)
    split = int(math.floor(0.9 * len(idx)))
    train_idx, held_idx = idx[:split], idx[split:]

    model = CharGRU(len(vocab), a.hidden, a.layers).to(dtype)
    losses, seconds = train(model, train_idx, a.steps, a.batch, a.seq_len, a.lr, a.clip,
                            log=None if a.json else 100)
    k = min(100, a.steps)
    train_loss = float(np.mean(losses[-k:])) if k > 0 else float("nan")
    hl = heldout_loss(model, held_idx)
    if a.checkpoint:
        save_checkpoint(model, vocab, a.checkpoint)
    res = {
        "train_loss": train_loss,
        "heldout_loss": hl,
        "chars_per_s": a.steps * a.batch * a.seq_len / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        "steps": a.steps,
        "vocab_size": int(len(vocab)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if a.json:
        print(json.dumps(res))
    else:
        for key, v in res.items():
            print(f"{key}: {v}")


if __name__ == "__main__":
    main()
