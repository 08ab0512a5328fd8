#!/usr/bin/python3
"""Generate tapegrad's test fixtures (tests/fixtures/*.npz) from PyTorch.

Deterministic: every fixture draws its data from numpy's default_rng with a fixed seed,
torch runs single-threaded, and the .npz archives are written uncompressed with a fixed
zip timestamp, so re-running this script reproduces the committed files byte for byte
(modulo differences in torch/BLAS builds).  The C++ tests read only the .npz files;
they never need torch.  See tests/fixtures/README.md for every file and key.

Usage:  /usr/bin/python3 tools/make_fixtures.py [--out tests/fixtures] [--only NAME ...]
"""
import argparse
import os
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_char_gru import CharGRU  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
DTYPES = {"f64": (torch.float64, np.float64), "f32": (torch.float32, np.float32)}

# ~3 KB of lowercase English words (one per line in the corpus), used to train the
# char_gru checkpoint fixtures.  Embedded so the fixtures do not depend on the system.
WORDS = """
suitors chrysalis shutters small virgules lacking stalemate unhooks dinkies brown burning
preteen blanches arrange moot corsets tiff eugenics clunky pharynx previewer equinoxes rocky
perkier dudgeon bespeaks photon slugged midwifing granite tequilas carnivals unclaimed caret
shafts suppler migratory termed linens homily swordsmen mouses limit ironies rubric ancestor
troupes dodos trying upbeats tubas embossing firmware gawked tingling pinker compile provision
sifter tireder debility ivories mobs laundries shortcuts jigsawing jazzy tithed coopered
shanties proffered marching eddied robberies siestas idealism cocktail sulked observed wooer
joysticks graceless stiffens sizer gelatine forks ford checkroom prophet flout pinto tie squid
mischance ponies mugginess spoons wise squawk labial radiating secondly concur enraging welters
qualities confine cheesed subteen slither copycats overreach homestead credenzas damps nipping
strummed scare surmised herder peaceful blobbing whimsies greenish crazies swarthy thumps audits
eighteens wear drones ruse cargoes scherzo dray wirier lanolin spatula undressed waken fascinate
relayed searing rumors compiling frigate trended worrisome jerkier eyeballed tailcoats smudging
casks startles recur vapors wistaria reply unstops clothes underused overacted fiesta males
deride conceive skivvying engraving elm widowers assist blackbird inflames knock piranhas bower
soaking cahoots departing etcher gases animates refulgent hepper indicated drippings china
rewrite resubmit hater rabbles coinage chronicle fishtail slackest movables snarls essayed wife
boxed headboard removal paymaster cleansers motes droves museum cookbooks plotter cradled
tidying terrace constable oat cession marshier bale excitable mailbomb cenotaph wayfarers
fallibly sequined crapped rustling brochures sombrely canniness autopsy quarried luncheons
weirdest boosted lipids endows hailstorm oils centipede shoddy hates futile beets envious jeez
finisher passer freezer exploded massage warez audibly aster hews terriers eaglet adulthood
stupidest backboard lugged stealthy selector bushier logicians curt echoes trumping latte bowler
blackish fag brine cabinets rosiest credenza nondairy samples neared loyally asked teasel polyp
loincloth striving chits kibitzing elisions hauled ripoffs spindled lymph solstice witches hived
starless aerator prank funky evened peony downwind litigious probables windpipe his socialite
reposes raveled rescinds crumb bushels exposes wilted stands decimal stymied filter helms badges
curs sketchier snuffle asterisks energy fruitier secretes guarantor locates cheap clipboard
ratifying reservoir manner bagatelle biking barrows goddamn flytraps xxxviii ilks rewrites
retorted travails henpecks bpm trenchant issued gypsies cannoning burs wetly spoof purred
treetop heartbeat oinked bizarrely testing extortion pensions clam liturgy karaokes interlink
bounties antiknock gamecocks soakings snarl milkmaid quiz bouillon instruct wittier spruce mews
burro
"""
CORPUS = "\n".join(WORDS.split()) + "\n"
PROBE = "hello\nworld\ngru\n"


# --------------------------------------------------------------------------- utilities
def savez(path, arrays):
    """Like numpy.savez (uncompressed, zip64 entries) but with a fixed timestamp."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(val), allow_pickle=False)
    size = os.path.getsize(path)
    assert size < 50_000, f"{path} is {size} bytes"
    print(f"  {os.path.basename(path):40s} {size:7d} B  keys: {', '.join(arrays)}")


def U(rng, shape, a=0.5):
    return rng.uniform(-a, a, size=shape)


def f0(x):
    """0-d float64 array for a hyper-parameter."""
    return np.array(x, dtype=np.float64)


def i0(x):
    return np.array(int(x), dtype=np.int64)


def to_t(v, tdt, npdt):
    v = np.asarray(v)
    if v.dtype.kind == "f":
        return torch.from_numpy(np.array(v, dtype=npdt))
    return torch.from_numpy(np.array(v, dtype=np.int64))


def layer_fixture(out, name, rng, inputs, fn, grad_keys, extra=None):
    """Writes <name>_f64.npz and <name>_f32.npz.

    inputs: dict of float64 / int64 numpy arrays (saved as is / cast to float32).
    fn(t) -> (outs, aux, params): outs = dict of differentiable outputs (each gets a
      seed); aux = dict of extra tensors saved without seed (e.g. gates);
      params = dict name -> leaf tensor whose gradient is reported as grad_<name>
      (for module-based fixtures whose weights are copied from t).
    grad_keys: names of inputs that require grad (gradient reported from t[name]).
    L = sum_k sum(outs[k] * seed_k); grads = dL/d(...).
    """
    seeds = None
    for tag in ("f64", "f32"):
        tdt, npdt = DTYPES[tag]
        t = {}
        for k, v in inputs.items():
            t[k] = to_t(v, tdt, npdt)
            if k in grad_keys:
                t[k].requires_grad_(True)
        outs, aux, params = fn(t)
        if seeds is None:  # drawn once in float64, cast for the f32 file
            seeds = {k: rng.uniform(-1, 1, size=tuple(o.shape)) for k, o in outs.items()}
        leaves = {k: t[k] for k in grad_keys if k not in params}
        leaves.update(params)
        Ls = sum((o * torch.from_numpy(seeds[k].astype(npdt))).sum() for k, o in outs.items())
        names = list(leaves)
        grads = torch.autograd.grad(Ls, [leaves[k] for k in names])
        arr = {}
        for k, v in inputs.items():
            arr[k] = np.asarray(v).astype(npdt) if np.asarray(v).dtype.kind == "f" else np.asarray(v, np.int64)
        for k, o in outs.items():
            arr[k] = o.detach().numpy()
        for k, o in aux.items():
            arr[k] = o.detach().numpy()
        for k in outs:
            arr["seed_" + k] = seeds[k].astype(npdt)
        for k, g in zip(names, grads):
            arr["grad_" + k] = g.numpy()
        for k, v in (extra or {}).items():
            arr[k] = v
        for k, v in arr.items():
            if v.dtype.kind == "f":
                assert v.dtype == npdt, (name, k, v.dtype)
                assert np.all(np.isfinite(v)), (name, k)
        savez(os.path.join(out, f"{name}_{tag}.npz"), arr)


def load_module(mod, t, names):
    """Copies t[name] into mod's parameters (same dtype); returns name -> parameter."""
    dt = t[names[0]].dtype
    mod.to(dt)
    params = dict(mod.named_parameters())
    with torch.no_grad():
        for k in names:
            params[k].copy_(t[k])
    return {k: params[k] for k in names}


# --------------------------------------------------------------------------- layers
def fx_linear(out):
    for name, xs, seed in (("linear", (4, 5), 1), ("linear3d", (2, 4, 5), 2)):
        rng = np.random.default_rng(seed)
        inputs = {"x": U(rng, xs), "weight": U(rng, (3, 5)), "bias": U(rng, (3,))}

        def fn(t):
            return {"y": F.linear(t["x"], t["weight"], t["bias"])}, {}, {}
        layer_fixture(out, name, rng, inputs, fn, ["x", "weight", "bias"])


CELL_PARAMS = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def fx_rnn_cell(out):
    rng = np.random.default_rng(3)
    H, I, B = 4, 5, 3
    inputs = {"x": U(rng, (B, I)), "h": U(rng, (B, H)), "weight_ih": U(rng, (H, I)),
              "weight_hh": U(rng, (H, H)), "bias_ih": U(rng, (H,)), "bias_hh": U(rng, (H,))}

    def fn(t):
        cell = nn.RNNCell(I, H, nonlinearity="tanh")
        p = load_module(cell, t, CELL_PARAMS)
        h_new = cell(t["x"], t["h"])
        ref = torch.tanh(t["x"] @ t["weight_ih"].T + t["bias_ih"] + t["h"] @ t["weight_hh"].T + t["bias_hh"])
        assert torch.allclose(h_new, ref, atol=1e-6)
        return {"h_new": h_new}, {}, p
    layer_fixture(out, "rnn_cell", rng, inputs, fn, ["x", "h"] + CELL_PARAMS)


def gru_gates(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """Hand-written GRU step (gate order r, z, n).  Returns r, z, n, h_new."""
    H = h.shape[-1]
    gi = x @ w_ih.T + b_ih
    i_r, i_z, i_n = gi[..., :H], gi[..., H:2 * H], gi[..., 2 * H:]
    w_hr, w_hz, w_hn = w_hh[:H], w_hh[H:2 * H], w_hh[2 * H:]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:]
    r = torch.sigmoid(i_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(i_z + h @ w_hz.T + b_hz)
    if reset_after:
        n = torch.tanh(i_n + r * (h @ w_hn.T + b_hn))
    else:
        n = torch.tanh(i_n + (r * h) @ w_hn.T + b_hn)
    return r, z, n, (1 - z) * n + z * h


def fx_gru_cell(out):
    H, I, B = 4, 5, 3
    for name, seed, after in (("gru_cell", 4, True), ("gru_cell_reset_before", 4, False)):
        # same seed -> the two fixtures share their inputs/weights/seeds
        rng = np.random.default_rng(seed)
        inputs = {"x": U(rng, (B, I)), "h": U(rng, (B, H)), "weight_ih": U(rng, (3 * H, I)),
                  "weight_hh": U(rng, (3 * H, H)), "bias_ih": U(rng, (3 * H,)),
                  "bias_hh": U(rng, (3 * H,))}

        def fn(t, after=after):
            if after:
                cell = nn.GRUCell(I, H)
                p = load_module(cell, t, CELL_PARAMS)
                h_new = cell(t["x"], t["h"])
                r, z, n, ref = gru_gates(t["x"], t["h"], *[p[k] for k in CELL_PARAMS])
                tol = 1e-12 if h_new.dtype == torch.float64 else 1e-6
                assert torch.allclose(h_new, ref, atol=tol), (h_new - ref).abs().max()
                return {"h_new": h_new}, {"r": r, "z": z, "n": n}, p
            r, z, n, h_new = gru_gates(t["x"], t["h"], *[t[k] for k in CELL_PARAMS],
                                       reset_after=False)
            return {"h_new": h_new}, {"r": r, "z": z, "n": n}, {}
        layer_fixture(out, name, rng, inputs, fn, ["x", "h"] + CELL_PARAMS)


def fx_gru(out):
    rng = np.random.default_rng(5)
    I, H, NL, B, T = 5, 4, 2, 3, 7
    inputs = {"x": U(rng, (B, T, I)), "h0": U(rng, (NL, B, H))}
    pnames = []
    for k in range(NL):
        ik = I if k == 0 else H
        for pn, shp in (("weight_ih", (3 * H, ik)), ("weight_hh", (3 * H, H)),
                        ("bias_ih", (3 * H,)), ("bias_hh", (3 * H,))):
            inputs[f"{pn}_l{k}"] = U(rng, shp)
            pnames.append(f"{pn}_l{k}")

    def fn(t):
        gru = nn.GRU(I, H, NL, batch_first=True)
        p = load_module(gru, t, pnames)
        output, h_n = gru(t["x"], t["h0"])
        # hand-written cross-check
        inp = t["x"]
        hs = []
        for k in range(NL):
            h = t["h0"][k]
            outs = []
            for s in range(T):
                h = gru_gates(inp[:, s], h, *[p[f"{n}_l{k}"] for n in CELL_PARAMS])[3]
                outs.append(h)
            inp = torch.stack(outs, 1)
            hs.append(h)
        tol = 1e-12 if output.dtype == torch.float64 else 1e-5
        assert torch.allclose(output, inp, atol=tol) and torch.allclose(h_n, torch.stack(hs), atol=tol)
        return {"output": output, "h_n": h_n}, {}, p
    layer_fixture(out, "gru", rng, inputs, fn, ["x", "h0"] + pnames,
                  extra={"num_layers": i0(NL), "hidden_size": i0(H), "input_size": i0(I)})


def fx_lstm_cell(out):
    rng = np.random.default_rng(6)
    H, I, B = 4, 5, 3
    inputs = {"x": U(rng, (B, I)), "h": U(rng, (B, H)), "c": U(rng, (B, H)),
              "weight_ih": U(rng, (4 * H, I)), "weight_hh": U(rng, (4 * H, H)),
              "bias_ih": U(rng, (4 * H,)), "bias_hh": U(rng, (4 * H,))}

    def fn(t):
        cell = nn.LSTMCell(I, H)
        p = load_module(cell, t, CELL_PARAMS)
        h_new, c_new = cell(t["x"], (t["h"], t["c"]))
        return {"h_new": h_new, "c_new": c_new}, {}, p
    layer_fixture(out, "lstm_cell", rng, inputs, fn, ["x", "h", "c"] + CELL_PARAMS)


def fx_embedding(out):
    rng = np.random.default_rng(7)
    inputs = {"weight": U(rng, (6, 3)),
              "indices": np.array([[0, 2, 5, 2], [1, 1, 4, 0]], dtype=np.int64)}

    def fn(t):
        return {"y": F.embedding(t["indices"], t["weight"])}, {}, {}
    layer_fixture(out, "embedding", rng, inputs, fn, ["weight"])


def scalar_loss_fixture(out, name, inputs, losses, grad_keys):
    """losses: dict loss_name -> (fn(t) -> 0-d tensor, suffix).  grad_<key><suffix> is the
    gradient of that scalar loss itself (no seed)."""
    for tag in ("f64", "f32"):
        tdt, npdt = DTYPES[tag]
        arr = {k: (np.asarray(v).astype(npdt) if np.asarray(v).dtype.kind == "f"
                   else np.asarray(v, np.int64)) for k, v in inputs.items()}
        for lname, (fn, suffix) in losses.items():
            t = {k: to_t(v, tdt, npdt) for k, v in inputs.items()}
            for k in grad_keys:
                t[k].requires_grad_(True)
            loss = fn(t)
            grads = torch.autograd.grad(loss, [t[k] for k in grad_keys])
            arr[lname] = loss.detach().numpy()
            for k, g in zip(grad_keys, grads):
                arr[f"grad_{k}{suffix}"] = g.numpy()
        for k, v in arr.items():
            assert np.all(np.isfinite(v)), (name, tag, k)
        savez(os.path.join(out, f"{name}_{tag}.npz"), arr)


def fx_cross_entropy(out):
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 2, size=(5, 7))
    target = rng.integers(0, 7, size=5).astype(np.int64)
    losses = {"loss_mean": (lambda t: F.cross_entropy(t["logits"], t["target"]), "_mean"),
              "loss_sum": (lambda t: F.cross_entropy(t["logits"], t["target"], reduction="sum"), "_sum")}
    scalar_loss_fixture(out, "cross_entropy", {"logits": logits, "target": target}, losses, ["logits"])
    ext = np.array([[1e4, -1e4, 0.0, 30.0, -30.0, 1.0, 2.0],
                    [-1e4, -1e4, -1e4, -1e4, -1e4, -1e4, 1e4],   # target far below max
                    [30.0, 30.0, -30.0, 0.0, 1e4, -1e4, 0.5],
                    [-30.0, -30.0, -30.0, -30.0, -30.0, -30.0, -30.0],
                    [1e4, 1e4, -30.0, 30.0, 0.0, -1e4, 3.0]])
    target = np.array([0, 0, 1, 3, 1], dtype=np.int64)
    scalar_loss_fixture(out, "cross_entropy_extreme", {"logits": ext, "target": target}, losses, ["logits"])


def fx_mse(out):
    rng = np.random.default_rng(9)
    inputs = {"a": U(rng, (4, 3), 1.0), "b": U(rng, (4, 3), 1.0)}
    scalar_loss_fixture(out, "mse", inputs, {"loss": (lambda t: F.mse_loss(t["a"], t["b"]), "")},
                        ["a", "b"])


# --------------------------------------------------------------------------- optimizers
OPT_CONFIGS = [
    # name, torch class, kwargs passed to torch, hyper-parameters saved (torch names)
    ("sgd", torch.optim.SGD, dict(lr=0.1),
     ["lr", "momentum", "dampening", "weight_decay", "nesterov"]),
    ("sgd_momentum", torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.0),
     ["lr", "momentum", "dampening", "weight_decay", "nesterov"]),
    ("sgd_nesterov", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     ["lr", "momentum", "dampening", "weight_decay", "nesterov"]),
    ("adam", torch.optim.Adam, dict(lr=1e-2),
     ["lr", "betas", "eps", "weight_decay", "amsgrad"]),
    ("adam_wd", torch.optim.Adam, dict(lr=1e-2, weight_decay=0.1),
     ["lr", "betas", "eps", "weight_decay", "amsgrad"]),
    ("adamw", torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1),
     ["lr", "betas", "eps", "weight_decay", "amsgrad"]),
    ("rmsprop", torch.optim.RMSprop, dict(lr=1e-2, alpha=0.99),
     ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"]),
    ("rmsprop_momentum", torch.optim.RMSprop, dict(lr=1e-2, alpha=0.99, momentum=0.9, centered=True),
     ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"]),
    ("adagrad", torch.optim.Adagrad, dict(lr=0.1),
     ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"]),
]


def fx_optimizers(out):
    for i, (name, cls, kw, hp_names) in enumerate(OPT_CONFIGS):
        rng = np.random.default_rng(100 + i)
        p0 = rng.normal(0, 1, size=(3, 4))
        grads = rng.normal(0, 1, size=(5, 3, 4))
        for tag in ("f64", "f32"):
            tdt, npdt = DTYPES[tag]
            p = nn.Parameter(torch.from_numpy(p0.astype(npdt)))
            opt = cls([p], foreach=False, **kw)
            hist = []
            for k in range(grads.shape[0]):
                p.grad = torch.from_numpy(grads[k].astype(npdt))
                opt.step()
                hist.append(p.detach().numpy().copy())
            d = opt.param_groups[0]
            arr = {"param0": p0.astype(npdt), "grads": grads.astype(npdt),
                   "params": np.stack(hist)}
            for h in hp_names:
                v = d[h]
                if h == "betas":
                    arr["beta1"], arr["beta2"] = f0(v[0]), f0(v[1])
                elif isinstance(v, bool):
                    arr[h] = i0(v)
                else:
                    arr[h] = f0(v)
            savez(os.path.join(out, f"opt_{name}_{tag}.npz"), arr)


def fx_clip(out):
    rng = np.random.default_rng(200)
    g = [rng.normal(0, 1, size=s) for s in ((3, 4), (5,), (2, 2))]
    for tag in ("f64", "f32"):
        tdt, npdt = DTYPES[tag]
        arr = {f"g{i}": gi.astype(npdt) for i, gi in enumerate(g)}
        arr["max_norm"] = f0(1.0)
        arr["norm_type"] = f0(2.0)
        arr["clip_value"] = f0(0.5)
        ps = [nn.Parameter(torch.zeros(gi.shape, dtype=tdt)) for gi in g]
        for p, gi in zip(ps, g):
            p.grad = torch.from_numpy(gi.astype(npdt))
        total = nn.utils.clip_grad_norm_(ps, max_norm=1.0, norm_type=2.0)
        arr["total_norm"] = total.detach().numpy()
        for i, p in enumerate(ps):
            arr[f"norm_clipped_g{i}"] = p.grad.numpy().copy()
        for p, gi in zip(ps, g):
            p.grad = torch.from_numpy(gi.astype(npdt))
        nn.utils.clip_grad_value_(ps, clip_value=0.5)
        for i, p in enumerate(ps):
            arr[f"value_clipped_g{i}"] = p.grad.numpy().copy()
        assert float(total) > 1.0
        savez(os.path.join(out, f"clip_{tag}.npz"), arr)


# --------------------------------------------------------------------------- sequence-model layers
def module_fixture(out, name, seed, make, inputs_fn, call, grad_inputs, extra=None):
    """A fixture of a whole nn.Module in eval mode (dropout off): its parameters (uniform ±0.5,
    drawn in state-dict order after the inputs), the inputs made by inputs_fn(rng), the outputs of
    call(module, t) (dict of differentiable outputs) and grad_<name> of every parameter and of the
    inputs in grad_inputs."""
    rng = np.random.default_rng(seed)
    inputs = inputs_fn(rng)
    shapes = [(k, tuple(v.shape)) for k, v in make().named_parameters()]
    for k, shp in shapes:
        inputs[k] = U(rng, shp)
    pnames = [k for k, _ in shapes]

    def fn(t):
        mod = make()
        p = load_module(mod, t, pnames)
        mod.eval()
        return call(mod, t), {}, p
    layer_fixture(out, name, rng, inputs, fn, grad_inputs + pnames, extra)


def fx_rnn(out):
    I, H, NL, B, T = 5, 4, 2, 3, 6
    for name, seed, nl, bi, bf in (("rnn_tanh", 30, "tanh", False, True),
                                   ("rnn_relu_bi", 31, "relu", True, False)):
        D = 2 if bi else 1
        xs = (B, T, I) if bf else (T, B, I)

        def call(m, t):
            output, h_n = m(t["x"], t["h0"])
            return {"output": output, "h_n": h_n}
        module_fixture(out, name, seed,
                       lambda nl=nl, bi=bi, bf=bf: nn.RNN(I, H, NL, nonlinearity=nl, batch_first=bf,
                                                          bidirectional=bi),
                       lambda rng, xs=xs, D=D: {"x": U(rng, xs), "h0": U(rng, (NL * D, B, H))},
                       call, ["x", "h0"],
                       extra={"num_layers": i0(NL), "hidden_size": i0(H), "input_size": i0(I),
                              "bidirectional": i0(bi), "batch_first": i0(bf)})


def fx_lstm(out):
    I, H, NL, B, T = 5, 4, 2, 3, 6
    for name, seed, bi, bf in (("lstm", 32, False, True), ("lstm_bi", 33, True, False)):
        D = 2 if bi else 1
        xs = (B, T, I) if bf else (T, B, I)

        def call(m, t):
            output, (h_n, c_n) = m(t["x"], (t["h0"], t["c0"]))
            return {"output": output, "h_n": h_n, "c_n": c_n}
        module_fixture(out, name, seed,
                       lambda bi=bi, bf=bf: nn.LSTM(I, H, NL, batch_first=bf, bidirectional=bi),
                       lambda rng, xs=xs, D=D: {"x": U(rng, xs), "h0": U(rng, (NL * D, B, H)),
                                                "c0": U(rng, (NL * D, B, H))},
                       call, ["x", "h0", "c0"],
                       extra={"num_layers": i0(NL), "hidden_size": i0(H), "input_size": i0(I),
                              "bidirectional": i0(bi), "batch_first": i0(bf)})


def fx_gru_bi(out):
    I, H, NL, B, T = 5, 4, 2, 3, 6

    def call(m, t):
        output, h_n = m(t["x"], t["h0"])
        return {"output": output, "h_n": h_n}
    module_fixture(out, "gru_bi", 34,
                   lambda: nn.GRU(I, H, NL, batch_first=True, bidirectional=True),
                   lambda rng: {"x": U(rng, (B, T, I)), "h0": U(rng, (2 * NL, B, H))},
                   call, ["x", "h0"],
                   extra={"num_layers": i0(NL), "hidden_size": i0(H), "input_size": i0(I)})


def fx_layer_norm(out):
    module_fixture(out, "layer_norm", 35, lambda: nn.LayerNorm((3, 4), eps=1e-5),
                   lambda rng: {"x": rng.normal(0.3, 2.0, size=(2, 5, 3, 4))},
                   lambda m, t: {"y": m(t["x"])}, ["x"])  # eps = 1e-5


def fx_gelu(out):
    rng = np.random.default_rng(36)
    x = np.concatenate([np.linspace(-12, 12, 49), rng.normal(0, 3, size=31)])
    layer_fixture(out, "gelu", rng, {"x": x}, lambda t: ({"y": F.gelu(t["x"])}, {}, {}), ["x"])


def fx_sequential(out):
    module_fixture(out, "sequential", 37,
                   lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 3)),
                   lambda rng: {"x": U(rng, (5, 4), 2.0)},
                   lambda m, t: {"y": m(t["x"])}, ["x"])


def causal_mask(T):
    return np.triu(np.ones((T, T), dtype=np.int64), 1)  # 1 = masked out (a later key)


def padding_mask(B, T):
    m = np.zeros((B, T), dtype=np.int64)
    m[1, -2:] = 1  # the last two keys of batch entry 1 are padding
    return m


def fx_mha(out):
    E, NH, B, L, S = 8, 2, 2, 5, 6

    def call_self(m, t):
        y, w = m(t["x"], t["x"], t["x"], key_padding_mask=t["key_padding_mask"].bool(),
                 attn_mask=t["attn_mask"].bool(), need_weights=True)
        return {"output": y, "weights": w}
    module_fixture(out, "mha_self", 38, lambda: nn.MultiheadAttention(E, NH, batch_first=True),
                   lambda rng: {"x": U(rng, (B, L, E), 1.0), "attn_mask": causal_mask(L),
                                "key_padding_mask": padding_mask(B, L)},
                   call_self, ["x"], extra={"num_heads": i0(NH)})

    def call_cross(m, t):
        y, w = m(t["query"], t["key"], t["value"], key_padding_mask=t["key_padding_mask"].bool(),
                 attn_mask=t["attn_mask"], need_weights=True, average_attn_weights=False)
        return {"output": y, "weights": w}
    module_fixture(out, "mha_cross", 39, lambda: nn.MultiheadAttention(E, NH, batch_first=True),
                   lambda rng: {"query": U(rng, (B, L, E), 1.0), "key": U(rng, (B, S, E), 1.0),
                                "value": U(rng, (B, S, E), 1.0),
                                "attn_mask": U(rng, (L, S), 2.0),  # additive float mask
                                "key_padding_mask": padding_mask(B, S)},
                   call_cross, ["query", "key", "value"], extra={"num_heads": i0(NH)})


def fx_transformer(out):
    D, NH, FF, B, T = 8, 2, 16, 2, 5
    for name, seed, act, norm_first in (("transformer_post_relu", 40, "relu", False),
                                        ("transformer_pre_gelu", 41, "gelu", True)):
        def make(act=act, norm_first=norm_first):
            return nn.TransformerEncoderLayer(D, NH, dim_feedforward=FF, dropout=0.1,
                                              activation=act, batch_first=True,
                                              norm_first=norm_first)

        def call(m, t):
            return {"y": m(t["x"], src_mask=t["src_mask"].bool(),
                           src_key_padding_mask=t["src_key_padding_mask"].bool())}
        module_fixture(out, name, seed, make,
                       lambda rng: {"x": U(rng, (B, T, D), 2.0), "src_mask": causal_mask(T),
                                    "src_key_padding_mask": padding_mask(B, T)},
                       call, ["x"], extra={"nhead": i0(NH), "dim_feedforward": i0(FF)})


# --------------------------------------------------------------------------- char_gru
def train_char_gru(V, idx, H, NL, embed_dim, steps=300, B=8, T=24, lr=1e-2, seed=0):
    """Small seeded training run (same streaming scheme as torch_char_gru.py)."""
    from torch_char_gru import train
    torch.manual_seed(seed)
    model = CharGRU(V, H, NL, embed_dim)
    losses, sec = train(model, idx, steps, B, T, lr, clip=5.0)
    print(f"  trained char_gru (embed={embed_dim}): loss {np.mean(losses[:20]):.3f} -> "
          f"{np.mean(losses[-20:]):.3f} in {sec:.1f}s")
    return model


def char_gru_expected(model, vocab, probe):
    """Per-layer gates (float64, by hand) and scores (float64 and float32)."""
    V = len(vocab)
    cps = np.array([ord(c) for c in probe], dtype=np.int64)
    assert np.all(np.isin(cps, vocab)), "probe chars must be in vocab"
    idx = torch.from_numpy(np.searchsorted(vocab, cps))
    T = len(probe)
    sd = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    NL, H = model.gru.num_layers, model.gru.hidden_size
    arr = {"text": cps.astype(np.int32)}
    if "embed.weight" in sd:
        inp = sd["embed.weight"][idx]
    else:
        inp = F.one_hot(idx, V).to(torch.float64)
    for k in range(NL):
        h = torch.zeros(H, dtype=torch.float64)
        rows = {n: [] for n in ("h_prev", "r", "z", "n", "h")}
        for s in range(T):
            r, z, n, hn = gru_gates(inp[s], h, *[sd[f"gru.{p}_l{k}"] for p in CELL_PARAMS])
            for key, v in (("h_prev", h), ("r", r), ("z", z), ("n", n), ("h", hn)):
                rows[key].append(v)
            h = hn
        for key, v in rows.items():
            arr[f"{key}_l{k}"] = torch.stack(v).numpy()
        inp = torch.stack(rows["h"])
    # nn.GRU (float64 copy of the model) must agree with the hand computation
    m64 = CharGRU(V, H, NL, model.embed.embedding_dim if hasattr(model, "embed") else None)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    with torch.no_grad():
        logits64, _ = m64(idx.unsqueeze(0))
        x64 = m64.embed(idx.unsqueeze(0)) if hasattr(m64, "embed") else F.one_hot(idx, V).double().unsqueeze(0)
        out64, _ = m64.gru(x64)
    top = torch.from_numpy(arr[f"h_l{NL - 1}"])
    assert (out64[0] - top).abs().max().item() < 1e-6
    logits_hand = top @ sd["head.weight"].T + sd["head.bias"]
    assert (logits64[0] - logits_hand).abs().max().item() < 1e-6
    lp = F.log_softmax(logits_hand[:-1], -1).gather(1, idx[1:, None])[:, 0]
    arr["log_probs"] = lp.numpy()
    arr["score_loss"] = (-lp.mean()).numpy()
    with torch.no_grad():
        logits32, _ = model(idx.unsqueeze(0))
        lp32 = F.log_softmax(logits32[0, :-1], -1).gather(1, idx[1:, None])[:, 0]
    arr["log_probs_f32"] = lp32.numpy()
    arr["score_loss_f32"] = (-lp32.mean()).numpy()
    assert abs(float(arr["score_loss"]) - float(arr["score_loss_f32"])) < 1e-4
    return arr


def fx_char_gru(out):
    from torch_char_gru import encode
    vocab, idx = encode(CORPUS)
    V = len(vocab)
    for name, embed_dim, seed in (("char_gru_torch", None, 0), ("char_gru_torch_embed", 8, 1)):
        model = train_char_gru(V, idx, 16, 2, embed_dim, seed=seed)
        ck = {"vocab": vocab.astype(np.int32)}
        ck.update({k: v.detach().numpy() for k, v in model.state_dict().items()})
        assert all(v.dtype == np.float32 for k, v in ck.items() if k != "vocab")
        savez(os.path.join(out, f"{name}.npz"), ck)
        savez(os.path.join(out, f"{name}_expected.npz"), char_gru_expected(model, vocab, PROBE))


# --------------------------------------------------------------------------- op conventions
def ramp(shape, base, step):
    """The inputs of the op-convention cases: base + step·k in row-major order (float64)."""
    n = int(np.prod(shape, dtype=np.int64))
    return (base + step * np.arange(n, dtype=np.float64)).reshape(shape)


# name, inputs as (shape, base, step), the op in torch. tests/test_op_conventions.cpp runs the
# same cases (in the same order) with tapegrad's ops. Chosen for what gradcheck cannot see:
# negative axes, keepdims, broadcasting, and the gradient at the points where a formula gives
# 0·∞ or a kink (relu, abs, clamp's edges, sqrt and pow at 0).
T_CE = torch.tensor([3, 0, 1])
OP_CASES = [
    ("add_bcast", [((2, 3, 4), -1, 0.1), ((3, 1), 0.5, 0.3)], lambda x: x[0] + x[1]),
    ("sub_bcast", [((4,), -1, 0.5), ((2, 1, 4), 0.5, 0.3)], lambda x: x[0] - x[1]),
    ("mul_bcast", [((2, 1, 4), -1, 0.25), ((3, 1), 0.5, 0.3)], lambda x: x[0] * x[1]),
    ("div_bcast", [((2, 3), -1, 0.25), ((3,), 0.5, 0.3)], lambda x: x[0] / x[1]),
    ("pow_scalar", [((5,), 0.5, 0.5)], lambda x: x[0] ** 2.5),
    ("pow_neg_base", [((5,), -2, 0.75)], lambda x: x[0] ** 3.0),
    ("pow_zero_exponent", [((3,), 0, 1)], lambda x: x[0] ** 0.0),
    ("pow_tensor", [((4,), 0.5, 0.5), ((4,), -1, 0.5)], lambda x: x[0] ** x[1]),
    ("pow_zero_base", [((3,), 0, 1), ((3,), 0, 1)], lambda x: x[0] ** x[1]),
    ("rsub", [((3,), -1, 1)], lambda x: 2.0 - x[0]),
    ("exp_log", [((4,), 0.25, 0.5)], lambda x: torch.log(torch.exp(x[0]) + x[0])),
    ("sqrt_zero", [((3,), 0, 1)], lambda x: torch.sqrt(x[0])),
    ("abs_zero", [((5,), -2, 1)], lambda x: torch.abs(x[0])),
    ("relu_zero", [((5,), -2, 1)], lambda x: torch.relu(x[0])),
    ("clamp_edges", [((7,), -1.5, 0.5)], lambda x: torch.clamp(x[0], -1.0, 1.0)),
    ("tanh_sigmoid", [((5,), -2, 1)], lambda x: torch.tanh(x[0]) * torch.sigmoid(x[0])),
    ("where_bcast", [((2, 3), -1, 0.5), ((3,), 5, 1)], lambda x: torch.where(x[0] > 0, x[0], x[1])),
    ("sum_axes", [((2, 3, 4), -1, 0.1)], lambda x: x[0].sum((0, -1))),
    ("sum_keepdims", [((2, 3, 4), -1, 0.1)], lambda x: x[0].sum(-2, keepdim=True)),
    ("mean_keepdims", [((2, 3, 4), -1, 0.1)], lambda x: x[0].mean((0, 2), keepdim=True)),
    ("mean_all", [((2, 3), -1, 0.1)], lambda x: x[0].mean()),
    ("max_axis", [((2, 3, 4), -1, 0.37)], lambda x: x[0].max(-2).values),
    ("max_keepdims", [((2, 3, 4), -1, 0.37)], lambda x: x[0].max(0, keepdim=True).values),
    ("softmax_axis", [((2, 3, 4), -1, 0.37)], lambda x: torch.softmax(x[0], -2)),
    ("log_softmax_axis", [((2, 3, 4), -1, 0.37)], lambda x: torch.log_softmax(x[0], 0)),
    ("transpose_neg", [((2, 3, 4), -1, 0.37)], lambda x: x[0].transpose(-1, 0)),
    ("permute", [((2, 3, 4), -1, 0.37)], lambda x: x[0].permute(2, 0, 1)),
    ("matmul_tt", [((3, 2), -1, 0.37), ((4, 3), 0.5, 0.1)], lambda x: x[0].T @ x[1].T),
    ("matmul_batched", [((2, 3, 4), -1, 0.1), ((4, 5), 0.5, 0.1)], lambda x: x[0] @ x[1]),
    ("matmul_batch_batch", [((2, 3, 4), -1, 0.1), ((2, 4, 5), 0.5, 0.1)], lambda x: x[0] @ x[1]),
    ("linear_3d", [((2, 3, 4), -1, 0.1), ((5, 4), 0.5, 0.1), ((5,), 0.1, 0.2)],
     lambda x: F.linear(x[0], x[1], x[2])),
    ("cross_entropy_mean", [((3, 4), -1, 0.37)], lambda x: F.cross_entropy(x[0], T_CE)),
    ("cross_entropy_sum", [((3, 4), -1, 0.37)], lambda x: F.cross_entropy(x[0], T_CE, reduction="sum")),
    ("cross_entropy_none", [((3, 4), -1, 0.37)], lambda x: F.cross_entropy(x[0], T_CE, reduction="none")),
    ("mse_sum", [((3, 4), -1, 0.37), ((3, 4), 1, -0.2)], lambda x: F.mse_loss(x[0], x[1], reduction="sum")),
    ("masked_fill_bcast", [((2, 3), -1, 0.5)],
     lambda x: x[0].masked_fill(torch.tensor([True, False, True]), -7.0)),
    ("gather_repeats", [((3, 4), -1, 0.37)],
     lambda x: torch.gather(x[0], 1, torch.tensor([[0, 0], [3, 3], [1, 2]]))),
    ("index_select_repeats", [((3, 4), -1, 0.37)], lambda x: x[0].index_select(0, torch.tensor([2, 2, 0]))),
    ("topk_largest", [((2, 5), -1, 0.37)], lambda x: torch.topk(x[0], 2, -1).values),
    ("topk_smallest", [((2, 5), -1, 0.37)], lambda x: torch.topk(x[0], 3, 1, largest=False).values),
    ("narrow_neg", [((2, 3, 4), -1, 0.1)], lambda x: x[0].narrow(-1, 1, 2)),
    ("chunk_neg", [((2, 6), -1, 0.1)], lambda x: torch.chunk(x[0], 3, -1)[2]),
    ("select_neg", [((2, 3, 4), -1, 0.1)], lambda x: x[0].select(-2, -1)),
    ("split_neg", [((2, 3, 4), -1, 0.1)], lambda x: torch.split(x[0], [1, 3], -1)[1]),
    ("concat_neg", [((2, 3), -1, 0.1), ((2, 2), 1, 0.1)], lambda x: torch.cat([x[0], x[1]], -1)),
    ("stack_neg1", [((2, 3), -1, 0.1), ((2, 3), 1, 0.1)], lambda x: torch.stack([x[0], x[1]], -1)),
    ("stack_neg3", [((2, 3), -1, 0.1), ((2, 3), 1, 0.1)], lambda x: torch.stack([x[0], x[1]], -3)),
    ("unsqueeze_neg", [((2, 3), -1, 0.1)], lambda x: x[0].unsqueeze(-1) * x[0].unsqueeze(-2)),
    ("unsqueeze_neg3", [((2, 3), -1, 0.1)], lambda x: x[0].unsqueeze(-3)),
    ("squeeze_neg", [((2, 1, 3), -1, 0.1)], lambda x: x[0].squeeze(-2)),
    ("broadcast_to", [((3, 1), -1, 0.5)], lambda x: x[0].broadcast_to(2, 3, 4)),
    ("reshape_infer", [((2, 3, 4), -1, 0.1)], lambda x: x[0].reshape(-1, 6)),
    ("scalar_ops", [((3,), 1, 1)], lambda x: 2.0 / x[0] - x[0] / 4.0),
]


def fx_op_conventions(out):
    """op_conventions_f64.npz: for each case, `<case>.y` and `<case>.g<i>`, the gradient of
    sum(y ⊙ w) with w_k = cos(k) (k the row-major index in y) for input i = ramp(...)."""
    arr = {}
    for name, specs, fn in OP_CASES:
        xs = [torch.from_numpy(ramp(*spec)).requires_grad_() for spec in specs]
        y = fn(xs)
        w = torch.cos(torch.arange(y.numel(), dtype=torch.float64)).reshape(y.shape)
        grads = torch.autograd.grad((y * w).sum(), xs)
        arr[f"{name}.y"] = y.detach().numpy()
        for i, g in enumerate(grads):
            arr[f"{name}.g{i}"] = g.numpy()
    savez(os.path.join(out, "op_conventions_f64.npz"), arr)


FIXTURES = {"linear": fx_linear, "rnn_cell": fx_rnn_cell, "gru_cell": fx_gru_cell,
            "gru": fx_gru, "lstm_cell": fx_lstm_cell, "embedding": fx_embedding,
            "cross_entropy": fx_cross_entropy, "mse": fx_mse, "optimizers": fx_optimizers,
            "clip": fx_clip, "char_gru": fx_char_gru,
            "rnn": fx_rnn, "lstm": fx_lstm, "gru_bi": fx_gru_bi, "layer_norm": fx_layer_norm,
            "gelu": fx_gelu, "sequential": fx_sequential, "mha": fx_mha,
            "transformer": fx_transformer, "op_conventions": fx_op_conventions}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--only", nargs="*", choices=list(FIXTURES))
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    for name, f in FIXTURES.items():
        if a.only and name not in a.only:
            continue
        print(name)
        f(a.out)


if __name__ == "__main__":
    main()
