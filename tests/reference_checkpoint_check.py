#!/usr/bin/env python3
"""`adaspan import reference` / `export reference` against the reference's checkpoint format.

usage: reference_checkpoint_check.py MODE ADASPAN_BINARY WORK_DIR [--golden-dir DIR]

No reference code is used. The reference-format checkpoints are built here with torch: a module tree
with the reference's attribute names and registration order (so state_dict keys, their order and the
optimizer's parameter indices are what torch makes of TransformerSeq), wrapped in DataParallel
(`module.` keys), trained two steps by torch's Adagrad with a LambdaLR warmup, saved as main.py
saves it. The "golden path" is `dense_forward` below: the reference's formulas in float64, written
from ../shared/reference/adaptive-span.md, first checked against the golden files (outputs of the
reference's own code) and then used to evaluate the reference checkpoint's weights over its ids.

MODE:
  eval      import -> adaspan eval --logprobs equals the golden path's log-probs (1e-4 abs, bpb 1e-5 rel),
            with adaptive spans and without (--attention fixed); inspect and generate accept the import
  identity  export -> import is the identity on every tensor (model, optimizer state, step, shape),
            for Adagrad and Adam; the exported dict loads into the reference-shaped module and torch's
            Adagrad as main.py does, and torch's Adam steps from an exported Adam state
  resume    train --resume continues the imported run at iter_no's step + 1, loss finite
  vocab     a vocabulary without some bytes: their rows are fresh on import and dropped on export,
            each with a warning naming the count; the other rows are moved, not changed
  errors    unknown key, missing key, wrong shape, not a checkpoint, bad data dir: exit 1, one line
Exit 0 when every check holds, 1 otherwise (each failure printed); 77 (skipped) when torch or h5py
is missing, except under CI=true (then 1). Without the golden files only their check of the golden
path is skipped (a failure under CI=true). WORK_DIR is emptied first.
"""
import argparse
import glob
import json
import math
import os
import random
import shutil
import subprocess
import sys
import warnings

SKIP = 77  # CTest's SKIP_RETURN_CODE: an input is missing on a developer's machine (never under CI=true)


def missing_input(reason):
    if os.environ.get("CI") == "true":
        print(f"FAIL CI=true, so this cannot be skipped: {reason}")
        sys.exit(1)
    print(f"skipped: {reason}")
    sys.exit(SKIP)


try:
    import h5py
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:
    missing_input(f"python3 lacks {e.name} (scripts/setup.sh installs torch, h5py and numpy)")

warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


# --- a module tree with the reference's names and registration order ------------------------------
class AdaptiveMask(nn.Module):
    def __init__(self, span, heads, init):
        super().__init__()
        self.current_val = nn.Parameter(torch.tensor(init, dtype=torch.float32).reshape(heads, 1, 1))
        self.register_buffer("mask_template", torch.linspace(1 - span, 0, steps=span))


class AdaptiveSpan(nn.Module):
    def __init__(self, span, heads, init):
        super().__init__()
        self._mask = AdaptiveMask(span, heads, init)


class SeqAttention(nn.Module):
    def __init__(self, span, heads, init, adaptive):
        super().__init__()
        self.dropout = nn.Dropout(0.0)
        if adaptive:
            self.adaptive_span = AdaptiveSpan(span, heads, init)


class MultiHeadSeqAttention(nn.Module):
    def __init__(self, d, span, heads, init, adaptive):
        super().__init__()
        self.attn = SeqAttention(span, heads, init, adaptive)
        self.proj_query = nn.Linear(d, d, bias=False)
        self.proj_out = nn.Linear(d, d, bias=False)
        self.proj_val = nn.Linear(d, d, bias=False)
        self.proj_key = nn.Linear(d, d, bias=False)


class FeedForwardLayer(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)
        self.dropout = nn.Dropout(0.0)


class TransformerSeqLayer(nn.Module):
    def __init__(self, d, ff, span, heads, init, adaptive):
        super().__init__()
        self.attn = MultiHeadSeqAttention(d, span, heads, init, adaptive)
        self.norm1 = nn.LayerNorm(d)
        self.ff = FeedForwardLayer(d, ff)
        self.norm2 = nn.LayerNorm(d)


class TransformerSeq(nn.Module):
    def __init__(self, vocab, d, heads, layers, ff, span, inits, adaptive=True):
        super().__init__()
        self.in_emb = nn.Embedding(vocab, d)
        self.out_emb = nn.Linear(d, vocab)
        self.key_pe = nn.Parameter(torch.randn(1, d // heads, span))
        self.layers = nn.ModuleList(TransformerSeqLayer(d, ff, span, heads, inits[l], adaptive) for l in range(layers))


SHAPE = dict(d=32, heads=4, layers=2, ff=64, span=128)
INITS = [[0.05, 0.3, 0.6, 1.0], [0.2, 0.45, 0.1, 0.8]]
NBATCHES = 5  # iterations of 5 steps: iter_no 1 -> 10 steps


def reference_model(vocab, adaptive=True, seed=3):
    torch.manual_seed(seed)
    model = TransformerSeq(vocab, SHAPE["d"], SHAPE["heads"], SHAPE["layers"], SHAPE["ff"], SHAPE["span"], INITS,
                           adaptive)
    with torch.no_grad():  # LayerNorm's init is 1/0: move it so that a transposed norm would show
        for layer in model.layers:
            for norm in (layer.norm1, layer.norm2):
                norm.weight.add_(0.1 * torch.randn_like(norm.weight))
                norm.bias.add_(0.1 * torch.randn_like(norm.bias))
    return model


def save_reference_checkpoint(path, model, iter_no, warmup=40, lr=0.07, grad_clip=0.03, optim="adagrad"):
    """Optimizer state as main.py makes it: Adagrad (+ grad_clip in its group) or Adam (its clip stays
    outside the state dict), LambdaLR warmup."""
    wrapped = nn.DataParallel(model)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    if optim == "adagrad":
        optimizer = torch.optim.Adagrad(params, lr=lr)
        optimizer.param_groups[0].setdefault("grad_clip", grad_clip)
    else:
        optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda ep: min(1, ep / warmup))
    steps = (iter_no + 1) * NBATCHES
    g = torch.Generator().manual_seed(7)
    for _ in range(steps):  # real updates of torch's Adagrad: a 'sum' and 'step' per parameter
        for p in params:
            p.grad = 0.01 * torch.randn(p.shape, generator=g)
        scheduler.step()
        optimizer.step()
        with torch.no_grad():
            for layer in model.layers:
                if hasattr(layer.attn.attn, "adaptive_span"):
                    layer.attn.attn.adaptive_span._mask.current_val.clamp_(0, 1)
    torch.save({"iter_no": iter_no, "model": wrapped.state_dict(), "logger": {"step": [1, 2]},
                "optimizer": optimizer.state_dict(), "scheduler_iter": scheduler.last_epoch}, path)
    return steps


# --- the reference's data format ------------------------------------------------------------------
def write_reference_data(directory, text, permute_all_bytes, seed=5):
    """train/valid/test.txt in the enwik8 format: decimal byte values, a line per line of text."""
    os.makedirs(directory, exist_ok=True)
    head = b""
    if permute_all_bytes:  # every byte, in a shuffled order of first appearance
        order = [b for b in range(256) if b != 10]
        random.Random(seed).shuffle(order)
        head = bytes(order) + b"\n"

    def enwik8(data):
        return "".join(" ".join(str(b) for b in line) + "\n" for line in data.split(b"\n"))

    for name, data in (("train.txt", head + text), ("valid.txt", text[:500]), ("test.txt", text[:500])):
        with open(os.path.join(directory, name), "w") as f:
            f.write(enwik8(data))


def dictionary_bytes(directory):
    """Byte of each reference id: symbols numbered by first appearance, as the reference's data.py."""
    order = []
    seen = set()
    with open(os.path.join(directory, "train.txt"), encoding="utf8") as f:
        for line in f:
            for word in line.split() + ["<eos>"]:
                if word not in seen:
                    seen.add(word)
                    order.append(word)
    return [10 if w == "<eos>" else int(w) for w in order]


def sample_text(n, seed=11):
    words = [b"the ", b"span ", b"learns ", b"attention ", b"head\n", b"byte ", b"model ", b"long ", b"context\n"]
    r = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += r.choice(words)
    return bytes(out[:n])


# --- the golden path: the reference's formulas, float64 --------------------------------------------
def dense_forward(p, x, caches, S, H, ramp, adaptive=True):
    """log_probs [B, M, V] and next hidden caches; p: reference names (no module.), float64."""
    h = p["in_emb.weight"][x]
    B, M, D = h.shape
    dh = D // H
    key_pe = p["key_pe"].reshape(dh, S)
    nxt = []
    for l, cache in enumerate(caches):
        pre = f"layers.{l}."
        if cache.size(1) < S:  # a short cache reads as zero rows before it (the reference pads)
            cache = torch.cat([cache.new_zeros(B, S - cache.size(1), D), cache], 1)
        h_all = torch.cat([cache[:, -S:], h], 1)  # [B, S + M, D]
        nxt.append(h_all[:, -S:])
        q = (h @ p[pre + "attn.proj_query.weight"].T).view(B, M, H, dh)
        k = (h_all @ p[pre + "attn.proj_key.weight"].T).view(B, S + M, H, dh)
        v = (h_all @ p[pre + "attn.proj_val.weight"].T).view(B, S + M, H, dh)
        idx = torch.arange(M)[:, None] + torch.arange(S)[None, :]  # query i, window column c: key i + c
        kw, vw = k[:, idx], v[:, idx]  # [B, M, S, H, dh]
        scores = torch.einsum("bmhd,bmshd->bhms", q, kw) + torch.einsum("bmhd,ds->bhms", q, key_pe)
        probs = torch.softmax(scores / math.sqrt(dh), -1)
        if adaptive:
            z = p[pre + "attn.attn.adaptive_span._mask.current_val"].reshape(1, H, 1, 1) * S
            distance = (S - 1 - torch.arange(S, dtype=torch.float64)).view(1, 1, 1, S)
            mask = ((ramp + z - distance) / ramp).clamp(0, 1)
            probs = probs * mask
            probs = probs / (probs.sum(-1, keepdim=True) + 1e-8)
        out = torch.einsum("bhms,bmshd->bmhd", probs, vw).reshape(B, M, D)
        out = out @ p[pre + "attn.proj_out.weight"].T
        h = torch.layer_norm(h + out, (D,), p[pre + "norm1.weight"], p[pre + "norm1.bias"])
        ff = torch.relu(h @ p[pre + "ff.fc1.weight"].T + p[pre + "ff.fc1.bias"])
        ff = ff @ p[pre + "ff.fc2.weight"].T + p[pre + "ff.fc2.bias"]
        h = torch.layer_norm(h + ff, (D,), p[pre + "norm2.weight"], p[pre + "norm2.bias"])
        # layer_norm's eps is torch's default 1e-5 in both
    log_probs = torch.log_softmax(h @ p["out_emb.weight"].T + p["out_emb.bias"], -1)
    return log_probs, nxt


def check_golden_path(golden_dir):
    files = sorted(glob.glob(os.path.join(golden_dir, "*.h5")))
    if not files:  # the comparison below still runs: only this check of the formulas is skipped
        reason = f"no golden *.h5 files in '{golden_dir}' (set --golden-dir or ADASPAN_GOLDEN_DIR)"
        if os.environ.get("CI") == "true":
            check(False, f"CI=true, so this cannot be skipped: {reason}")
        else:
            print(f"skipped: the golden path's own check ({reason})")
        return
    for path in files:
        with h5py.File(path, "r") as f:
            a = {k: int(f.attrs[k]) for k in ("S", "H", "R", "L")}
            params = {n: torch.from_numpy(f["params"][n][()]).double() for n in f["params"]}
            x = torch.from_numpy(f["inputs/x"][()]).long()
            caches = [torch.from_numpy(f["inputs/h_cache"][str(l)][()]).double() for l in range(a["L"])]
            expected = f["outputs/log_probs"][()]
        got, _ = dense_forward(params, x, caches, a["S"], a["H"], a["R"])
        err = float(np.abs(got.numpy() - expected).max())
        check(err < 1e-6, f"golden path == the reference's own outputs in {os.path.basename(path)} "
                          f"(max |log-prob diff| {err:.2e})")


def golden_path_logprobs(state, ids_of_bytes, data, M, ramp, adaptive=True):
    """Per-byte log-probs of `data` (one stream, blocks of M, zero caches at the start), as eval writes them."""
    p = {k[len("module."):]: v.double() for k, v in state.items()}
    S, H = SHAPE["span"], SHAPE["heads"]
    to_id = {b: i for i, b in enumerate(ids_of_bytes)}
    tokens = torch.tensor([to_id[b] for b in data], dtype=torch.long)
    n = len(tokens)
    out = np.full(n, np.nan)
    caches = [torch.zeros(1, S, SHAPE["d"], dtype=torch.float64) for _ in range(SHAPE["layers"])]
    with torch.no_grad():
        for start in range(0, n - 1, M):
            count = min(M, n - 1 - start)
            x = torch.zeros(1, M, dtype=torch.long)
            x[0, :count] = tokens[start:start + count]
            lp, caches = dense_forward(p, x, caches, S, H, ramp, adaptive)
            target = tokens[start + 1:start + 1 + count]
            out[start + 1:start + 1 + count] = lp[0, torch.arange(count), target].numpy()
    return out


def reference_setup(work, text_length, permute_all_bytes, iter_no, adaptive=True, optim="adagrad", name="reference"):
    """A reference data directory over a sample text and a reference checkpoint trained on its ids:
    (text, data_dir, ids of bytes, checkpoint path, optimizer steps)."""
    text = sample_text(text_length)
    data_dir = os.path.join(work, "data")
    write_reference_data(data_dir, text, permute_all_bytes)
    ids = dictionary_bytes(data_dir)
    pt = os.path.join(work, name + ".pt")
    steps = save_reference_checkpoint(pt, reference_model(len(ids), adaptive=adaptive), iter_no=iter_no, optim=optim)
    return text, data_dir, ids, pt, steps


# --- running adaspan ------------------------------------------------------------------------------
def run(binary, *args, expect=0):
    result = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    if expect is not None and result.returncode != expect:
        print(f"$ adaspan {' '.join(map(str, args))}\nexit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def h5_tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        attrs = {k: f.attrs[k] for k in f.attrs}
    return out, attrs


def imported(binary, work, name, pt, data_dir, *extra):
    out = os.path.join(work, name)
    r = run(binary, "import", "reference", pt, "--out", out, "--reference-data", data_dir, "--block-size", 64,
            "--batch-size", 2, "--span-ramp", 32, *extra)
    check(r.returncode == 0, f"import {name} exits 0")
    ckpts = sorted(glob.glob(os.path.join(out, "ckpt-*.h5")))
    return out, (ckpts[0] if ckpts else None), r


def eval_equals_golden_path(binary, work, name, text, data_dir, ids, pt, adaptive):
    """Import `pt`, `adaspan eval --logprobs` the text, compare with the golden path on the same weights."""
    _, ckpt, _ = imported(binary, work, name, pt, data_dir)
    if ckpt is None:
        return None
    text_path = os.path.join(work, "text.bin")
    with open(text_path, "wb") as f:
        f.write(text)
    lp_path = os.path.join(work, name + ".logprobs")
    r = run(binary, "eval", "--checkpoint", ckpt, "--data", text_path, "--batch-size", 1, "--block-size", 64,
            "--threads", 1, "--logprobs", lp_path)
    check(r.returncode == 0, f"adaspan eval reads the imported checkpoint ({name})")
    if r.returncode != 0:
        return None
    ours = np.fromfile(lp_path, dtype=np.float32).astype(np.float64)
    state = torch.load(pt, weights_only=True)["model"]
    golden = golden_path_logprobs(state, ids, text, 64, 32.0, adaptive)
    both = ~np.isnan(golden)
    check(ours.shape == golden.shape and bool(np.array_equal(np.isnan(ours), np.isnan(golden))),
          f"eval and the golden path predict the same bytes ({name})")
    err = float(np.abs(ours[both] - golden[both]).max())
    bpb_ours, bpb_golden = -ours[both].mean() / math.log(2), -golden[both].mean() / math.log(2)
    print(f"{name}: bits per byte: adaspan eval {bpb_ours:.7f}, golden path {bpb_golden:.7f}; "
          f"max |log-prob diff| {err:.2e}")
    check(err < 1e-4, f"per-byte log-probs equal to 1e-4 ({name})")
    check(abs(bpb_ours - bpb_golden) <= 1e-5 * bpb_golden, f"bits per byte equal to 1e-5 relative ({name})")
    return ckpt


def mode_eval(binary, work, golden_dir):
    check_golden_path(golden_dir)
    text, data_dir, ids, pt, steps = reference_setup(work, 3000, permute_all_bytes=True, iter_no=1)
    ckpt = eval_equals_golden_path(binary, work, "run", text, data_dir, ids, pt, adaptive=True)
    check(ckpt is not None and ckpt.endswith(f"ckpt-{steps}.h5"), f"the imported checkpoint is at step {steps}")
    if ckpt is None:
        return
    r = run(binary, "inspect", ckpt)
    check(r.returncode == 0 and f"step {steps}" in r.stdout.replace(":", ""), "inspect verifies the import")
    g = subprocess.run([binary, "generate", "--checkpoint", ckpt, "--prompt", "the span ", "--bytes", "32",
                        "--temperature", "0"], capture_output=True)  # bytes: a random model's need not be UTF-8
    check(g.returncode == 0 and len(g.stdout) >= 32 and b"generated 32 bytes" in g.stderr,
          f"generate continues a prompt from the import: {g.stdout[:60]!r} {g.stderr[-200:]!r}")
    # Without --adapt-span: every head sees its S keys (adaspan's --attention fixed).
    _, _, _, plain, _ = reference_setup(work, 3000, permute_all_bytes=True, iter_no=1, adaptive=False, name="plain")
    plain_ckpt = eval_equals_golden_path(binary, work, "plain_run", text, data_dir, ids, plain, adaptive=False)
    if plain_ckpt is not None:
        with h5py.File(plain_ckpt, "r") as f:
            check(json.loads(f.attrs["config"])["model"]["attention"] == "fixed",
                  "a reference without adaptive spans imports as --attention fixed")


def mode_identity(binary, work):
    _, data_dir, ids, pt, _ = reference_setup(work, 2000, permute_all_bytes=True, iter_no=1)
    _, first, _ = imported(binary, work, "first", pt, data_dir)
    exported = os.path.join(work, "exported.pt")
    r = run(binary, "export", "reference", first, "--out", exported, "--reference-data", data_dir, "--nbatches",
            NBATCHES)
    check(r.returncode == 0, "export exits 0")
    check("python main.py" in r.stdout and "--adapt-span" in r.stdout, "export prints the reference command line")
    _, second, _ = imported(binary, work, "second", exported, data_dir)
    a, attrs_a = h5_tensors(first)
    b, attrs_b = h5_tensors(second)
    check(sorted(a) == sorted(b), "export -> import has the same datasets")
    differ = [n for n in a if n in b and not np.array_equal(a[n], b[n])]
    check(not differ, f"export -> import is the identity on every tensor ({len(a)} datasets; differ: {differ[:3]})")
    check(attrs_a["step"] == attrs_b["step"] and attrs_a["optimizer_steps"] == attrs_b["optimizer_steps"],
          "the step survives export -> import")
    config_a, config_b = json.loads(attrs_a["config"]), json.loads(attrs_b["config"])
    check(config_a["model"] == config_b["model"] and config_a["optim"] == config_b["optim"],
          "the model and optimizer config survive export -> import")

    # The exported dict, as main.py's _load_checkpoint reads it.
    saved = torch.load(exported, weights_only=True)
    original = torch.load(pt, weights_only=True)
    check(list(saved["model"]) == list(original["model"]), "exported keys and their order are the reference's")
    for name, tensor in original["model"].items():
        if not torch.equal(saved["model"][name], tensor):
            check(False, f"exported {name} equals the original reference tensor")
            break
    else:
        check(True, "every exported tensor equals the original reference checkpoint's")
    model = nn.DataParallel(reference_model(len(ids), seed=99))
    model.load_state_dict(saved["model"])
    optimizer = torch.optim.Adagrad([p for p in model.parameters() if p.requires_grad], lr=0.07)
    optimizer.param_groups[0].setdefault("grad_clip", 0.03)
    optimizer.load_state_dict(saved["optimizer"])
    sums = [optimizer.state[p]["sum"] for p in model.parameters()]
    original_sums = [s["sum"] for s in original["optimizer"]["state"].values()]
    check(all(torch.equal(x, y) for x, y in zip(sums, original_sums)),
          "the exported Adagrad state loads into torch's Adagrad, equal to the original's")
    check(saved["iter_no"] == original["iter_no"] and saved["scheduler_iter"] == original["scheduler_iter"],
          f"iter_no {saved['iter_no']} and scheduler_iter {saved['scheduler_iter']} as in the original")

    # Adam: its state round-trips too, and torch's Adam takes a step from the exported state.
    _, _, _, adam_pt, _ = reference_setup(work, 2000, permute_all_bytes=True, iter_no=1, optim="adam", name="adam")
    _, adam_first, r = imported(binary, work, "adam_first", adam_pt, data_dir)
    check("--grad-clip for Adam is not in its checkpoint" in r.stderr, "an Adam import warns that its clip is unknown")
    adam_out = os.path.join(work, "adam_exported.pt")
    r = run(binary, "export", "reference", adam_first, "--out", adam_out, "--reference-data", data_dir, "--nbatches",
            NBATCHES)
    check(r.returncode == 0, "Adam export exits 0")
    _, adam_second, _ = imported(binary, work, "adam_second", adam_out, data_dir)
    a, _ = h5_tensors(adam_first)
    b, _ = h5_tensors(adam_second)
    differ = [n for n in a if n not in b or not np.array_equal(a[n], b[n])]
    check(sorted(a) == sorted(b) and not differ and "optimizer/exp_avg_sq/key_pe" in a,
          f"Adam: export -> import is the identity on every tensor ({len(a)} datasets; differ: {differ[:3]})")
    adam_saved = torch.load(adam_out, weights_only=True)
    model = nn.DataParallel(reference_model(len(ids), seed=98))
    model.load_state_dict(adam_saved["model"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.07)
    optimizer.load_state_dict(adam_saved["optimizer"])
    for p in params:
        p.grad = torch.ones_like(p)
    try:
        optimizer.step()
        stepped = all(int(float(optimizer.state[p]["step"])) == (1 + 1) * NBATCHES + 1 for p in params)
    except Exception as e:  # the check below names it
        stepped = False
        print(f"Adam step failed: {e}")
    check(stepped, "torch's Adam steps from the exported state (its step counts on from the import's)")


def mode_resume(binary, work):
    text, data_dir, _, pt, steps = reference_setup(work, 20000, permute_all_bytes=False, iter_no=1)
    run_dir, _, _ = imported(binary, work, "run", pt, data_dir)
    text_path = os.path.join(work, "train.bin")
    with open(text_path, "wb") as f:
        f.write(text)
    r = run(binary, "train", "--config", os.path.join(run_dir, "train.conf"), "--resume", "auto", "--data", text_path,
            "--steps", steps + 4, "--log-every", 1, "--eval-every", 0, "--threads", 1)
    check(r.returncode == 0, "train --resume auto continues the imported run")
    records = []
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(metrics):
        records = [json.loads(line) for line in open(metrics) if line.strip()]
    resumed = [rec for rec in records if rec.get("event") == "resumed"]
    check(len(resumed) == 1 and resumed[0].get("step") == steps,
          f"one 'resumed' event at the imported step {steps}: {resumed}")
    train = [rec for rec in records if "bpc" in rec and "step" in rec and "event" not in rec]
    check([rec["step"] for rec in train] == list(range(steps + 1, steps + 5)),
          f"training records at steps {steps + 1}..{steps + 4}: {[rec.get('step') for rec in train]}")
    check(all(math.isfinite(rec["bpc"]) for rec in train), "the loss is finite")
    lrs = [rec.get("lr") for rec in train]
    check(len(lrs) == 4 and all(a is not None and abs(a - 0.07 * s / 40) < 1e-9
                                for a, s in zip(lrs, range(steps + 1, steps + 5))),
          f"the warmup the stored learning rates imply (40 steps) continues: lr {lrs}")


def mode_vocab(binary, work):
    _, data_dir, ids, pt, _ = reference_setup(work, 2000, permute_all_bytes=False, iter_no=0)
    missing = 256 - len(ids)
    _, ckpt, r = imported(binary, work, "run", pt, data_dir)
    check(f"the rows of the {missing} bytes it never saw" in r.stderr, f"import warns of {missing} unseen bytes")
    tensors, _ = h5_tensors(ckpt)
    original = torch.load(pt, weights_only=True)["model"]
    original_state = torch.load(pt, weights_only=True)["optimizer"]
    sums = list(original_state["state"].values())  # parameter order: key_pe, in_emb, out_emb.weight, out_emb.bias
    moved = all(np.array_equal(tensors["model/" + n][ids], original["module." + n].numpy())
                for n in ("in_emb.weight", "out_emb.weight", "out_emb.bias"))
    moved = moved and all(np.array_equal(tensors["optimizer/sum/" + n][ids], sums[i]["sum"].numpy())
                          for i, n in ((1, "in_emb.weight"), (2, "out_emb.weight"), (3, "out_emb.bias")))
    check(moved, "each reference id's rows (embedding, output weight and bias, their Adagrad sums) are at its byte")
    unseen = [b for b in range(256) if b not in ids]
    fresh = tensors["model/in_emb.weight"][unseen]
    check(bool(np.all(np.isfinite(fresh))) and 0.5 < float(fresh.std()) < 1.5, "unseen bytes get N(0, 1) rows")
    check(bool(np.all(tensors["optimizer/sum/in_emb.weight"][unseen] == 0)), "and no Adagrad history")
    exported = os.path.join(work, "exported.pt")
    r = run(binary, "export", "reference", ckpt, "--out", exported, "--reference-data", data_dir)
    check(r.returncode == 0 and f"the {missing} bytes it lacks are dropped" in r.stderr,
          f"export warns that {missing} bytes are dropped")
    saved = torch.load(exported, weights_only=True)["model"]
    check(all(torch.equal(saved[k], v) for k, v in original.items()), "export restores the reference's rows")


def mode_errors(binary, work):
    text, data_dir, _, base, _ = reference_setup(work, 2000, permute_all_bytes=False, iter_no=0)
    saved = torch.load(base, weights_only=True)

    def variant(name, change):
        copy = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
        change(copy)
        path = os.path.join(work, name + ".pt")
        torch.save(copy, path)
        return path

    cases = [
        ("unknown key", variant("unknown", lambda c: c["model"].__setitem__(
            "module.layers.0.attn.attn.persistent_memory.key", torch.zeros(1))),
         "layers.0.attn.attn.persistent_memory.key"),
        ("missing key", variant("missing", lambda c: c["model"].pop("module.layers.1.norm2.bias")),
         "layers.1.norm2.bias"),
        ("wrong shape", variant("shape", lambda c: c["model"].__setitem__(
            "module.layers.0.ff.fc2.weight", torch.zeros(32, 65))), "layers.0.ff.fc2.weight"),
        ("no iter_no", variant("noiter", lambda c: c.pop("iter_no")), "iter_no"),
    ]
    garbage = os.path.join(work, "garbage.pt")
    with open(garbage, "wb") as f:
        f.write(b"not a checkpoint")
    cases.append(("not a checkpoint", garbage, "not a readable torch checkpoint"))
    for what, path, needle in cases:
        out = os.path.join(work, "out-" + what.replace(" ", "-"))
        r = run(binary, "import", "reference", path, "--out", out, "--reference-data", data_dir, expect=None)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 1 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr,
              f"{what}: exit 1, one line naming {needle}: {lines[:2]}")
        check(not glob.glob(os.path.join(out, "ckpt-*.h5")), f"{what}: no checkpoint written")
    r = run(binary, "import", "reference", base, "--out", os.path.join(work, "x"), "--reference-data", work,
            expect=None)
    check(r.returncode == 1 and "no train.txt" in r.stderr, "a data dir without train.txt is one line")
    other = os.path.join(work, "other")
    write_reference_data(other, text, permute_all_bytes=True)
    r = run(binary, "import", "reference", base, "--out", os.path.join(work, "y"), "--reference-data", other,
            expect=None)
    check(r.returncode == 1 and "another data directory" in r.stderr, "a vocabulary of another size is one line")
    first = os.path.join(work, "first")
    run(binary, "import", "reference", base, "--out", first, "--reference-data", data_dir)
    r = run(binary, "import", "reference", base, "--out", first, "--reference-data", data_dir, expect=None)
    check(r.returncode == 1 and "already holds a run" in r.stderr, "an existing run dir is never overwritten")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["eval", "identity", "resume", "vocab", "errors"])
    parser.add_argument("binary")
    parser.add_argument("work")
    parser.add_argument("--golden-dir", default=os.environ.get("ADASPAN_GOLDEN_DIR", ""))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    torch.set_num_threads(1)
    if args.mode == "eval":
        mode_eval(args.binary, args.work, args.golden_dir)
    else:
        globals()["mode_" + args.mode](args.binary, args.work)
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
