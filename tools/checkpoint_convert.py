#!/usr/bin/python3
"""Convert between tapegrad char_gru checkpoints (.npz) and PyTorch.

Checkpoint layout (written by `char_gru train` and tools/torch_char_gru.py):
  vocab                         int32 (V,)  Unicode code points in one-hot order (entry i is
                                            one-hot index i; any order, unique)
  embed.weight                  (V, E)      optional; absent -> one-hot inputs
  gru.weight_ih_l{k}            (3H, I_k)   rows [W_ir | W_iz | W_in], I_0 = E or V, I_k = H
  gru.weight_hh_l{k}            (3H, H)     rows [W_hr | W_hz | W_hn]
  gru.bias_ih_l{k}, gru.bias_hh_l{k}  (3H,)
  head.weight (V, H), head.bias (V,)
i.e. `vocab` plus the state dict of tools/torch_char_gru.py:CharGRU, nothing else. What
`char_gru train --resume` needs lives beside it in CK.resume.npz, which PyTorch never reads.

API:
  model, vocab = to_torch("ck.npz")        # CharGRU in the checkpoint's dtype
  from_torch(model, vocab, "out.npz")      # writes vocab + state dict (model's dtype)

Generic snippet for any nn.Module whose .npz keys are its state-dict names:

  import numpy as np, torch
  # load
  m.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(p).items()})
  # save
  np.savez(p, **{k: v.detach().numpy() for k, v in m.state_dict().items()})

(load_state_dict_npz / save_state_dict_npz below are exactly these two lines; extra
keys such as `vocab` are skipped on load.)

Run as a script to round-trip a checkpoint through PyTorch and print the max abs
difference (expected 0):
  /usr/bin/python3 tools/checkpoint_convert.py [tests/fixtures/char_gru_torch.npz]
"""
import argparse
import os
import re
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_char_gru import CharGRU  # noqa: E402


def load_state_dict_npz(m, p, skip=("vocab",)):
    """m.load_state_dict from an .npz whose keys are state-dict names (strict)."""
    with np.load(p) as f:
        m.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files if k not in skip})
    return m


def save_state_dict_npz(m, p, **extra):
    """np.savez of m.state_dict() (plus extra arrays, e.g. vocab=...)."""
    np.savez(p, **extra, **{k: v.detach().cpu().numpy() for k, v in m.state_dict().items()})


def to_torch(npz_path):
    """Loads a tapegrad char_gru checkpoint -> (CharGRU model, vocab int32 array).

    V, H, number of layers and the optional embedding size are inferred from the
    shapes; the model takes the checkpoint's float dtype."""
    with np.load(npz_path) as f:
        arrs = {k: f[k] for k in f.files}
    if "vocab" not in arrs:
        raise ValueError(f"{npz_path}: no 'vocab' array")
    vocab = arrs.pop("vocab").astype(np.int32)
    if int(arrs.pop("reset_before", 0)) == 1:
        raise ValueError(f"{npz_path}: a reset-before GRU (char_gru train --reset-before, the course's "
                         "candidate tanh(W_in x + W_hn (r*h) + b)); PyTorch's nn.GRU computes the "
                         "reset-after candidate r*(W_hn h + b_hn) and cannot load it")
    V = len(vocab)
    H = arrs["gru.weight_hh_l0"].shape[1]
    L = 1 + max(int(m.group(1)) for k in arrs
                for m in [re.fullmatch(r"gru\.weight_hh_l(\d+)", k)] if m)
    E = arrs["embed.weight"].shape[1] if "embed.weight" in arrs else None
    dtype = arrs["head.weight"].dtype
    model = CharGRU(V, H, L, E).to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrs.items()})  # strict
    return model, vocab


def from_torch(model, vocab, npz_path):
    """Writes a CharGRU (any dtype) and its vocab as a tapegrad checkpoint."""
    vocab = np.asarray(vocab, dtype=np.int32)
    if len(np.unique(vocab)) != len(vocab):
        raise ValueError("vocab must be unique (any order: entry i is one-hot index i)")
    if np.any((vocab < 0) | (vocab > 0x10FFFF) | ((vocab >= 0xD800) & (vocab <= 0xDFFF))):
        raise ValueError("vocab must hold Unicode scalar values (no surrogates)")
    if len(vocab) != model.head.weight.shape[0]:
        raise ValueError("len(vocab) != model output size")
    save_state_dict_npz(model, npz_path, vocab=vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "char_gru_torch.npz"),
        help="a char_gru checkpoint (.npz) to round-trip (default: tests/fixtures/char_gru_torch.npz)")
    src = ap.parse_args().checkpoint
    try:
        model, vocab = to_torch(src)
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as e:
        # A missing or unreadable file, not an .npz, or not a char_gru state dict (load_state_dict's
        # RuntimeError names the missing, unexpected and mis-shaped keys).
        sys.exit(f"checkpoint_convert.py: error: {src}: {type(e).__name__}: {e}")
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "roundtrip.npz")
        from_torch(model, vocab, dst)
        with np.load(src) as a, np.load(dst) as b:
            if sorted(a.files) != sorted(b.files):
                raise SystemExit(f"key mismatch: {sorted(a.files)} vs {sorted(b.files)}")
            diff = 0.0
            for k in a.files:
                if a[k].shape != b[k].shape or a[k].dtype != b[k].dtype:
                    raise SystemExit(f"{k}: {a[k].shape} {a[k].dtype} vs {b[k].shape} {b[k].dtype}")
                diff = max(diff, float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0)
    g = model.gru
    print(f"{src}: V={len(vocab)} H={g.hidden_size} layers={g.num_layers} "
          f"embed={getattr(getattr(model, 'embed', None), 'embedding_dim', None)} "
          f"dtype={model.head.weight.dtype}")
    print(f"round-trip max abs difference: {diff}")


if __name__ == "__main__":
    main()
