#!/usr/bin/python3
"""PyTorch twin of `char_gru sample`: the same checkpoint, the same sampling loop, timed alike.

  * The checkpoint is the .npz `char_gru train` writes (its arrays are nn.GRU's and nn.Linear's
    state dict under gru.* and head.*, and `vocab`, the code points); it is loaded into
    tools/torch_char_gru.py's CharGRU by tools/checkpoint_convert.py's to_torch (a strict
    load_state_dict).
  * Each sample starts from a newline (or, without one in the vocabulary, a character drawn
    uniformly), or from --prefix; then, one character at a time with the state carried:
    logits of the last position / temperature -> softmax -> one draw, until a newline or
    --max-len characters. The model sees one character per forward, as char_gru's does.
  * characters = characters drawn (a closing newline too); seconds = the sampling loop alone
    (the checkpoint's loading excluded); chars_per_s = characters / seconds.
  * (char_gru also draws a sample again when it contains an offensive word; with the counts
    above both tools are compared per character drawn.)

Usage:
  /usr/bin/python3 tools/torch_char_gru_sample.py --checkpoint CK.npz [--n 10] [--max-len 80]
      [--temperature 1.0] [--seed 0] [--prefix TEXT] [--threads 1]
Prints one JSON object: {"characters", "seconds", "chars_per_s", "samples"}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_convert import to_torch  # noqa: E402


def load(path):
    """The checkpoint as a CharGRU in eval mode, and its vocabulary as characters."""
    model, vocab = to_torch(path)
    model.eval()
    return model, [chr(int(c)) for c in vocab]


def sample(model, vocab, prefix, temperature, max_len, gen, count):
    index = {c: i for i, c in enumerate(vocab)}
    out = prefix
    if prefix:
        context = [index[c] for c in prefix]
    elif "\n" in index:
        context = [index["\n"]]
    else:
        context = [int(torch.randint(len(vocab), (1,), generator=gen))]
        out += vocab[context[0]]
    h = None
    for _ in range(max_len):
        logits, h = model(torch.tensor([context], dtype=torch.int64), h)
        p = torch.softmax(logits[0, -1].double() / temperature, dim=-1)
        nxt = int(torch.multinomial(p, 1, generator=gen))
        count[0] += 1
        if vocab[nxt] == "\n":
            break
        out += vocab[nxt]
        context = [nxt]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=80)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, vocab = load(a.checkpoint)
    unknown = sorted(set(a.prefix) - set(vocab))
    if unknown:
        sys.exit(f"error: --prefix: characters not in the vocabulary: {unknown!r}")
    gen = torch.Generator().manual_seed(a.seed)
    count = [0]
    with torch.no_grad():
        t0 = time.perf_counter()
        samples = [sample(model, vocab, a.prefix, a.temperature, a.max_len, gen, count) for _ in range(a.n)]
        seconds = time.perf_counter() - t0
    print(json.dumps({"characters": count[0], "seconds": seconds,
                      "chars_per_s": count[0] / seconds if seconds > 0 else 0.0, "samples": samples}))


if __name__ == "__main__":
    main()
