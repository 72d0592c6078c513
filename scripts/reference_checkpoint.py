#!/usr/bin/env python3
"""The reference's checkpoints in and out: `adaspan import reference` and `adaspan export reference`.

    reference_checkpoint.py import CKPT.pt --out RUN_DIR --reference-data DIR --config-template JSON [...]
    reference_checkpoint.py export CHECKPOINT --out model.pt --reference-data DIR [--nbatches N]

The reference is facebookresearch/adaptive-span. Its `main.py --checkpoint` file is a torch.save
dict: `iter_no` (the last finished iteration of --nbatches steps), `model` (TransformerSeq's
state_dict, keys prefixed `module.` by the DataParallel/DDP wrapper), `optimizer` (the state_dict
of its Adagrad with per-tensor step clipping, or Adam/SGD), `logger`, and `scheduler_iter` (the
LambdaLR warmup's step count, only when --lr-warmup > 0).

Its vocabulary is not bytes: data.py numbers the whitespace-separated symbols of DIR/train.txt in
order of first appearance, with `<eos>` closing each line. In the enwik8 format (prep_enwik8.py)
each symbol is a decimal byte value ("101") and a line end stands for byte 10. So both directions
map reference ids to bytes through DIR/train.txt: the embedding and output rows (and their
optimizer state) are reordered; bytes the reference never saw get rows of a fresh init on import
(and zero optimizer state), and are dropped on export, with a warning naming how many.

adaspan counts optimizer steps; the reference counts iterations of --nbatches steps. An imported
checkpoint's step is the optimizer's update count (Adagrad/Adam `step`, = (iter_no + 1) x
nbatches), so a resumed run continues at the next update; export writes iter_no = step / nbatches
- 1 (the reference resumes at iteration iter_no + 1).

Errors are one line on stderr, exit 1. The C++ binary passes --config-template: adaspan's default
training configuration as JSON, so an imported checkpoint's config has every key this adaspan reads.
"""
import argparse
import io
import json
import math
import os
import re
import secrets
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
except ImportError as missing:
    sys.exit(f"adaspan: error: python3 lacks {missing.name}, which the reference's checkpoints need "
             "(scripts/setup.sh installs torch and h5py)")

EOS_BYTE = 10  # the reference's `<eos>`: the line end of its enwik8 format
BYTES = 256
FORMAT_VERSION = 1


class ImportError_(Exception):
    """One line for the user: what cannot be mapped, naming the key or the file."""


def fail(message):
    raise ImportError_(message)


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- the reference's vocabulary ------------------------------------------------------------------
def reference_vocabulary(data_dir):
    """Byte of each reference id, from DIR/train.txt as data.py's Dictionary numbers them."""
    path = os.path.join(data_dir, "train.txt")
    if not os.path.isfile(path):
        fail(f"--reference-data {data_dir}: no train.txt (the reference's data directory holds train.txt, "
             "valid.txt and test.txt)")
    order, seen = [], set()
    size, done, next_report = os.path.getsize(path), 0, 64 << 20
    with open(path, "r", encoding="utf8") as f:
        for line in f:
            done += len(line)
            words = line.split()
            if not seen.issuperset(words):
                for word in words:  # in order: the first appearance numbers a symbol
                    if word not in seen:
                        seen.add(word)
                        order.append(word)
            if "<eos>" not in seen:
                seen.add("<eos>")
                order.append("<eos>")
            if done >= next_report:
                log(f"reading {path}: {100 * done // max(size, 1)}%")
                next_report += 64 << 20
    symbol_byte = {}
    for symbol in order:
        if symbol == "<eos>":
            value = EOS_BYTE
        elif re.fullmatch(r"[0-9]{1,3}", symbol) and int(symbol) < BYTES:
            value = int(symbol)
        else:
            fail(f"{path}: symbol '{symbol[:20]}' is not a decimal byte value (the enwik8 format of "
                 "prep_enwik8.py); adaspan models bytes")
        symbol_byte[symbol] = value
    ids = [symbol_byte[s] for s in order]
    if len(set(ids)) != len(ids):
        twice = next(b for b in ids if ids.count(b) > 1)
        names = [s for s in order if symbol_byte[s] == twice]
        fail(f"{path}: symbols {' and '.join(names)} both stand for byte {twice}")
    return ids


# --- the reference's model: names, order, shapes ---------------------------------------------------
def layer_names(layer, adaptive):
    """A TransformerSeqLayer's parameters in registration order (module tree, pre-order)."""
    p = f"layers.{layer}."
    names = [p + "attn.attn.adaptive_span._mask.current_val"] if adaptive else []
    names += [p + f"attn.proj_{x}.weight" for x in ("query", "out", "val", "key")]
    names += [p + "norm1.weight", p + "norm1.bias"]
    names += [p + "ff.fc1.weight", p + "ff.fc1.bias", p + "ff.fc2.weight", p + "ff.fc2.bias"]
    names += [p + "norm2.weight", p + "norm2.bias"]
    return names


def reference_parameter_names(layers, adaptive):
    """model.parameters() order of TransformerSeq: its own key_pe first, then its children."""
    names = ["key_pe", "in_emb.weight", "out_emb.weight", "out_emb.bias"]
    for layer in range(layers):
        names += layer_names(layer, adaptive)
    return names


def mask_template_name(layer):
    return f"layers.{layer}.attn.attn.adaptive_span._mask.mask_template"


def reference_shapes(shape, adaptive):
    L, D, H, F, S, V = (shape[k] for k in ("layers", "d_model", "heads", "ff", "span", "vocab"))
    shapes = {"key_pe": (1, D // H, S), "in_emb.weight": (V, D), "out_emb.weight": (V, D), "out_emb.bias": (V,)}
    for layer in range(L):
        p = f"layers.{layer}."
        if adaptive:
            shapes[p + "attn.attn.adaptive_span._mask.current_val"] = (H, 1, 1)
        for x in ("query", "out", "val", "key"):
            shapes[p + f"attn.proj_{x}.weight"] = (D, D)
        for norm in ("norm1", "norm2"):
            shapes[p + norm + ".weight"] = (D,)
            shapes[p + norm + ".bias"] = (D,)
        shapes[p + "ff.fc1.weight"] = (F, D)
        shapes[p + "ff.fc1.bias"] = (F,)
        shapes[p + "ff.fc2.weight"] = (D, F)
        shapes[p + "ff.fc2.bias"] = (D,)
    return shapes


def adaspan_name(reference_name):
    """The adaspan checkpoint's name of a reference parameter."""
    return reference_name.replace("attn.attn.adaptive_span._mask.current_val", "attn.span.current_val")


def infer_shape(state):
    """Layers, d_model, heads, ff, span, vocab and adaptive span from the tensors' shapes."""
    for key in ("key_pe", "in_emb.weight", "out_emb.weight"):
        if key not in state:
            fail(f"the reference checkpoint's model has no '{key}'")
    key_pe = state["key_pe"]
    if key_pe.dim() != 3 or key_pe.size(0) != 1:
        fail(f"'key_pe' is {tuple(key_pe.shape)}, expected [1, d_model / heads, attn_span]")
    vocab, d_model = state["in_emb.weight"].shape
    d_head, span = key_pe.size(1), key_pe.size(2)
    if d_model % d_head:
        fail(f"'key_pe' has head size {d_head}, which does not divide d_model {d_model} ('in_emb.weight')")
    layer_ids = sorted({int(m.group(1)) for k in state for m in [re.match(r"layers\.(\d+)\.", k)] if m})
    if not layer_ids or layer_ids != list(range(len(layer_ids))):
        fail(f"the reference checkpoint's layers are {layer_ids or 'missing'}, expected layers.0 .. layers.N-1")
    adaptive = "layers.0.attn.attn.adaptive_span._mask.current_val" in state
    fc1 = state.get("layers.0.ff.fc1.weight")
    if fc1 is None:
        fail("the reference checkpoint's model has no 'layers.0.ff.fc1.weight'")
    return {"layers": len(layer_ids), "d_model": d_model, "heads": d_model // d_head, "ff": fc1.size(0),
            "span": span, "vocab": vocab, "adaptive": adaptive}


def check_model(state, shape):
    """Every tensor the shape needs, in its shape; nothing else (one line naming the first key)."""
    adaptive = shape["adaptive"]
    shapes = reference_shapes(shape, adaptive)
    buffers = {mask_template_name(l): (shape["span"],) for l in range(shape["layers"])} if adaptive else {}
    for key in state:
        if key not in shapes and key not in buffers:
            fail(f"the reference checkpoint has '{key}', which no adaspan model has (persistent memory, adaptive "
                 "input/output and a span in only some layers are not supported)")
    for key, expected in list(shapes.items()) + list(buffers.items()):
        if key not in state:
            fail(f"the reference checkpoint's model has no '{key}' (a {shape['layers']}-layer model with "
                 f"d_model {shape['d_model']} needs it)")
        if tuple(state[key].shape) != tuple(expected):
            fail(f"'{key}' is {list(state[key].shape)}, expected {list(expected)} for layers {shape['layers']}, "
                 f"d_model {shape['d_model']}, heads {shape['heads']}, inner size {shape['ff']}, "
                 f"attn_span {shape['span']}")


def strip_module_prefix(state):
    """DataParallel/DDP save every key as `module.NAME`."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


# --- rows: reference ids <-> bytes ------------------------------------------------------------------
ROW_TENSORS = ("in_emb.weight", "out_emb.weight", "out_emb.bias")


def rows_to_bytes(tensor, ids, fill):
    """[V, ...] by reference id -> [256, ...] by byte; bytes with no id take `fill`'s rows."""
    out = fill.clone()
    out[torch.tensor(ids, dtype=torch.long)] = tensor.to(out.dtype)
    return out


def rows_to_ids(tensor, ids):
    """[256, ...] by byte -> [V, ...] by reference id."""
    return tensor[torch.tensor(ids, dtype=torch.long)].clone()


def fresh_rows(name, d_model, seed):
    """adaspan's init of a row tensor (model/adaptive_span_lm.cpp, model/parameter_modules.cpp)."""
    g = torch.Generator().manual_seed(seed)
    if name == "in_emb.weight":
        return torch.randn(BYTES, d_model, generator=g)
    bound = 1.0 / math.sqrt(d_model)
    shape = (BYTES, d_model) if name == "out_emb.weight" else (BYTES,)
    return torch.empty(shape).uniform_(-bound, bound, generator=g)


# --- the optimizer state --------------------------------------------------------------------------
SLOTS = {"adagrad": ("sum",), "adam": ("exp_avg", "exp_avg_sq")}


def optimizer_kind(optimizer_state):
    states = list(optimizer_state.get("state", {}).values())
    if not states:
        return None
    keys = set(states[0])
    if "sum" in keys:
        return "adagrad"
    if "exp_avg" in keys and "exp_avg_sq" in keys:
        return "adam"
    fail(f"the reference checkpoint's optimizer state holds {sorted(keys)}: adaspan has Adagrad ('sum') and "
         "Adam ('exp_avg', 'exp_avg_sq') (an SGD run: pass --weights-only)")


def step_of(states):
    steps = {int(float(s["step"])) for s in states if "step" in s}
    if len(steps) > 1:
        fail(f"the reference checkpoint's optimizer state has different step counts {sorted(steps)}")
    return steps.pop() if steps else None


# --- import -------------------------------------------------------------------------------------
def load_reference(path):
    if not os.path.isfile(path):
        fail(f"no reference checkpoint '{path}'")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds; keep the line that says why
        text = str(e)
        why = re.search(r"WeightsUnpickler error:\s*(.+?)(\n\n|$)", text, re.S)
        reason = why.group(1) if why else (text.splitlines()[0] if text else type(e).__name__)
        fail(f"'{path}' is not a readable torch checkpoint ({' '.join(reason.split())[:200]})")
    if not isinstance(saved, dict):
        fail(f"'{path}' holds a {type(saved).__name__}, not the reference's checkpoint dict")
    for key in ("iter_no", "model"):
        if key not in saved:
            fail(f"'{path}' has no '{key}' (not a checkpoint of the reference's main.py --checkpoint)")
    unknown = sorted(set(saved) - {"iter_no", "model", "optimizer", "logger", "scheduler_iter"})
    if unknown:
        fail(f"'{path}' has '{unknown[0]}', which the reference's checkpoint does not have")
    return saved


def imported_config(template, shape, args, optimizer, group):
    config = json.loads(template)
    model, data, optim, run = config["model"], config["data"], config["optim"], config["run"]
    model.update({"layers": shape["layers"], "d-model": shape["d_model"], "heads": shape["heads"],
                  "ff-size": shape["ff"], "attn-span": shape["span"], "vocab": BYTES,
                  "attention": "adaptive" if shape["adaptive"] else "fixed", "span-mode": "static",
                  "normalizer": "softmax", "span-ramp": float(args.span_ramp),
                  "span-loss-coeff": float(args.span_loss_coeff), "dropout": float(args.dropout)})
    data.update({"batch-size": args.batch_size, "block-size": args.block_size, "data": [], "valid-data": []})
    data.pop("data-identity", None)  # the corpus is not known: resume does not compare it
    optim["optimizer"] = optimizer
    if group:
        lr = float(group.get("initial_lr", group.get("lr", optim["lr"])))
        optim["lr"] = lr
        if "grad_clip" in group:
            optim["grad-clip"] = float(group["grad_clip"])
        elif optimizer == "adam":  # main.py keeps Adam's --grad-clip outside the state dict
            optim["grad-clip"] = 0.0
            log("warning: the reference's --grad-clip for Adam is not in its checkpoint: imported as 0 (its "
                "default, no clipping); set grad-clip in RUN_DIR/train.conf if it trained with one")
        if optimizer == "adam" and "betas" in group:
            optim["adam-beta1"], optim["adam-beta2"] = (float(b) for b in group["betas"])
        if optimizer == "adam" and "eps" in group:
            optim["adam-eps"] = float(group["eps"])
    optim["warmup-steps"] = args.warmup_steps
    run.update({"run-dir": args.out, "seed": args.seed})
    return config


def warmup_steps(saved, group, given):
    """--warmup-steps, else the warmup the stored learning rates imply, else 0 (none, or finished)."""
    if given is not None:
        return given
    if "scheduler_iter" in saved and group and "initial_lr" in group and float(group["lr"]) > 0:
        ratio = float(group["lr"]) / float(group["initial_lr"])
        if ratio < 1:  # still warming up: lr = initial_lr * iter / warmup
            return int(round(int(saved["scheduler_iter"]) / ratio))
    return 0


def run_import(args):
    saved = load_reference(args.checkpoint)
    state = strip_module_prefix(saved["model"])
    shape = infer_shape(state)
    check_model(state, shape)
    ids = reference_vocabulary(args.reference_data)
    if len(ids) != shape["vocab"]:
        fail(f"--reference-data {args.reference_data}: train.txt has {len(ids)} symbols, the checkpoint's "
             f"'in_emb.weight' {shape['vocab']} rows (another data directory, or an older reference that also "
             "numbered valid.txt and test.txt?)")
    names = reference_parameter_names(shape["layers"], shape["adaptive"])

    optimizer_state = saved.get("optimizer") or {}
    kind = None if args.weights_only else optimizer_kind(optimizer_state)
    if kind is None and not args.weights_only:
        fail(f"'{args.checkpoint}' has no optimizer state (pass --weights-only to import the weights alone)")
    groups = optimizer_state.get("param_groups") or [{}]
    group = groups[0] if kind else {}
    iter_no = int(saved["iter_no"])
    per_param = {}
    step = None
    if kind:
        indices = [i for g in groups for i in g.get("params", [])]
        if len(indices) != len(names):
            fail(f"the reference checkpoint's optimizer has {len(indices)} parameters, its model {len(names)}")
        states = optimizer_state["state"]
        for index, name in zip(indices, names):
            s = states.get(index, states.get(str(index)))
            if s is None:
                fail(f"the reference checkpoint's optimizer has no state for '{name}' (parameter {index})")
            for slot in SLOTS[kind]:
                if slot not in s:
                    fail(f"the optimizer state of '{name}' has no '{slot}'")
                if tuple(s[slot].shape) != tuple(state[name].shape):
                    fail(f"the optimizer's '{slot}' of '{name}' is {list(s[slot].shape)}, the parameter "
                         f"{list(state[name].shape)}")
            per_param[name] = s
        step = step_of(per_param.values())
    if step is None:
        if args.nbatches is None:
            fail("the checkpoint's optimizer state has no step count: pass --nbatches (the reference's, "
                 "default 1000) so that the step is (iter_no + 1) x nbatches")
        step = (iter_no + 1) * args.nbatches
    args.warmup_steps = warmup_steps(saved, group, args.warmup_steps)
    config = imported_config(args.config_template, shape, args, kind or "adagrad", group)

    D, S = shape["d_model"], shape["span"]
    seen = len(ids)
    if seen < BYTES:
        log(f"warning: the reference's vocabulary has {seen} symbols: the rows of the {BYTES - seen} bytes it "
            f"never saw are freshly initialised (seed {args.seed})")
    model, slots = {}, {slot: {} for slot in SLOTS[kind or "adagrad"]}
    for name in names:
        tensor = state[name].detach().to(torch.float32)
        ours = adaspan_name(name)
        if name in ROW_TENSORS:
            tensor = rows_to_bytes(tensor, ids, fresh_rows(name, D, args.seed))
        elif name == "key_pe":
            tensor = tensor.reshape(D // shape["heads"], S)
        elif name.endswith("current_val"):
            tensor = tensor.reshape(shape["heads"])
        model[ours] = tensor
        for slot in slots:
            value = per_param[name][slot].detach().to(torch.float32) if kind else torch.zeros_like(state[name])
            if name in ROW_TENSORS:
                value = rows_to_bytes(value, ids, torch.zeros_like(tensor))
            slots[slot][ours] = value.reshape(tensor.shape)
    if shape["adaptive"]:
        spans = np.stack([model[f"layers.{l}.attn.span.current_val"].double().numpy() * S
                          for l in range(shape["layers"])])
    else:
        spans = np.full((shape["layers"], shape["heads"]), float(S))
    path = write_checkpoint(args.out, step, config, kind or "adagrad", model, slots, spans, args.batch_size)
    print(f"imported {args.checkpoint} (iter_no {iter_no}, {step} optimizer steps): {shape['layers']} layers, "
          f"d_model {D}, {shape['heads']} heads, inner size {shape['ff']}, attn_span {S}, "
          f"{'adaptive spans' if shape['adaptive'] else 'no adaptive span (--attention fixed)'} -> {path}")
    conf = write_train_conf(args.out, config)
    print(f"continue with: adaspan train --config {conf} --resume auto --data FILE --steps N")


def write_train_conf(run_dir, config):
    """RUN_DIR/train.conf: the `train` flags a resume must repeat (shape, streams, optimizer), for --config."""
    m, d, o = config["model"], config["data"], config["optim"]
    keys = [("layers", m), ("d-model", m), ("heads", m), ("ff-size", m), ("attn-span", m), ("span-ramp", m),
            ("span-loss-coeff", m), ("dropout", m), ("attention", m), ("batch-size", d), ("block-size", d),
            ("optimizer", o), ("lr", o), ("grad-clip", o), ("warmup-steps", o)]
    if o["optimizer"] == "adam":
        keys += [("adam-beta1", o), ("adam-beta2", o), ("adam-eps", o)]
    path = os.path.join(run_dir, "train.conf")
    with open(path, "w") as f:
        f.write("# The imported model's flags: adaspan train --config " + path + " --resume auto --data FILE --steps N\n")
        for key, section in keys:
            if key in section:
                f.write(f"{key} = {section[key]}\n")
        f.write(f"run-dir = {os.path.abspath(run_dir)}\n")
    return path


def write_checkpoint(run_dir, step, config, optimizer, model, slots, spans, streams):
    """RUN_DIR/ckpt-STEP.h5 in adaspan's format (docs/checkpoint-format.md), written as .tmp and renamed."""
    if os.path.isdir(run_dir):
        held = [n for n in os.listdir(run_dir) if n == "metrics.jsonl" or re.fullmatch(r"ckpt-\d+\.h5", n)]
        if held:
            fail(f"--out {run_dir} already holds a run ({held[0]}); import into a new directory")
    os.makedirs(run_dir, exist_ok=True)
    final = os.path.join(run_dir, f"ckpt-{step}.h5")
    tmp = final + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)

    def dataset(f, name, array):
        array = np.ascontiguousarray(array)
        chunks = (max(1, array.shape[0]),) + array.shape[1:] if array.ndim else None
        f.create_dataset(name, data=array, chunks=chunks, fletcher32=True)

    with h5py.File(tmp, "w-", libver=("v108", "latest")) as f:
        f.attrs["format"] = np.bytes_("adaspan checkpoint")
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["step"] = np.int64(step)
        f.attrs["tokens_seen"] = np.int64(0)  # the reference does not count them
        f.attrs["halved_lr_until"] = np.int64(0)
        f.attrs["run_id"] = np.bytes_(secrets.token_hex(8))
        f.attrs["adopts_unnamed"] = np.int64(0)
        f.attrs["config"] = np.bytes_(json.dumps(config, sort_keys=True))
        f.attrs["optimizer"] = np.bytes_(optimizer)
        f.attrs["optimizer_steps"] = np.int64(step)
        f.attrs["writer_ranks"] = np.int64(1)
        f.attrs["global_streams"] = np.int64(streams)
        for name, tensor in sorted(model.items()):
            dataset(f, "model/" + name, tensor.numpy())
        for slot, tensors in slots.items():
            for name, tensor in sorted(tensors.items()):
                dataset(f, f"optimizer/{slot}/{name}", tensor.numpy())
        # No stream positions: like the reference on a resume, the streams start at their beginnings.
        dataset(f, "spans", spans.astype(np.float64))
        dataset(f, "placement", np.zeros(spans.shape, dtype=np.int64))
        f.attrs["complete"] = np.int64(1)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    latest_tmp = os.path.join(run_dir, "latest.tmp")
    fd = os.open(latest_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(os.path.basename(final) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(latest_tmp, os.path.join(run_dir, "latest"))
    return final


# --- export -------------------------------------------------------------------------------------
def read_adaspan(path):
    if not os.path.isfile(path):
        fail(f"no checkpoint '{path}'")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail(f"'{path}' is not a readable HDF5 file: {e}")
    with f:
        if f.attrs.get("format") not in (b"adaspan checkpoint", "adaspan checkpoint") or int(f.attrs.get("complete", 0)) != 1:
            fail(f"'{path}' is not a complete adaspan checkpoint")
        if int(f.attrs["format_version"]) > FORMAT_VERSION:
            fail(f"'{path}' has checkpoint format {int(f.attrs['format_version'])}; this script reads up to {FORMAT_VERSION}")
        raw = f.attrs["config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        model = {n: torch.from_numpy(np.asarray(f["model"][n][()], dtype=np.float32)) for n in f["model"]}
        slots = {}
        if "optimizer" in f:
            for slot in f["optimizer"]:
                slots[slot] = {n: torch.from_numpy(np.asarray(f["optimizer"][slot][n][()], dtype=np.float32))
                               for n in f["optimizer"][slot]}
        optimizer = f.attrs["optimizer"]
        optimizer = optimizer.decode() if isinstance(optimizer, bytes) else str(optimizer)
        return config, model, slots, optimizer, int(f.attrs["step"])


def exportable_shape(config, path):
    m = config["model"]
    refuse = {"span-mode": "static", "normalizer": "softmax", "vocab": BYTES}
    for key, value in refuse.items():
        if m.get(key, value) != value:
            fail(f"'{path}' has --{key} {m[key]}; the reference has only {key} {value}")
    if m.get("attention", "adaptive") not in ("adaptive", "fixed", "full"):
        fail(f"'{path}' has --attention {m['attention']}; the reference has adaptive spans or plain attention")
    return {"layers": m["layers"], "d_model": m["d-model"], "heads": m["heads"], "ff": m["ff-size"],
            "span": m["attn-span"], "adaptive": m.get("attention", "adaptive") == "adaptive"}


def optimizer_group_template(kind, lr):
    """The param_group keys of this torch's optimizer (so its load_state_dict finds what it expects)."""
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.Adagrad(dummy, lr=lr) if kind == "adagrad" else torch.optim.Adam(dummy, lr=lr)
    group = dict(opt.state_dict()["param_groups"][0])
    group.pop("params", None)
    return group


def run_export(args):
    config, model, slots, optimizer, step = read_adaspan(args.checkpoint)
    shape = exportable_shape(config, args.checkpoint)
    ids = reference_vocabulary(args.reference_data)
    shape["vocab"] = len(ids)
    dropped = BYTES - len(ids)
    if dropped:
        log(f"warning: the reference's vocabulary ({args.reference_data}/train.txt) has {len(ids)} symbols: the "
            f"embedding and output rows of the {dropped} bytes it lacks are dropped")
    names = reference_parameter_names(shape["layers"], shape["adaptive"])
    D, H, S = shape["d_model"], shape["heads"], shape["span"]
    state = {}

    def reference_form(name, tensor):
        if name in ROW_TENSORS:
            return rows_to_ids(tensor, ids)
        if name == "key_pe":
            return tensor.reshape(1, D // H, S)
        if name.endswith("current_val"):
            return tensor.reshape(H, 1, 1)
        return tensor

    for name in names:
        ours = adaspan_name(name)
        if ours not in model:
            fail(f"'{args.checkpoint}' has no model/{ours}")
        state[name] = reference_form(name, model[ours]).clone()
    if shape["adaptive"]:
        for layer in range(shape["layers"]):
            state[mask_template_name(layer)] = torch.linspace(1 - S, 0, steps=S)
    ordered = {}
    for name in names:  # state_dict order: a module's parameters, then its buffers, then its children
        ordered["module." + name] = state[name]
        if name.endswith("current_val"):
            layer = int(name.split(".")[1])
            ordered["module." + mask_template_name(layer)] = state[mask_template_name(layer)]

    optim = config["optim"]
    lr, warmup = float(optim["lr"]), int(optim.get("warmup-steps", 0))
    group = optimizer_group_template(optimizer, lr)
    group["lr"] = lr * min(1.0, step / warmup) if warmup > 0 else lr
    if warmup > 0:
        group["initial_lr"] = lr
    # Adagrad reads it from its group; the reference's Adam takes --grad-clip from the command line,
    # and torch's Adam ignores the key: kept so that an import finds the value again.
    group["grad_clip"] = float(optim.get("grad-clip", 0))
    if optimizer == "adam":
        group["betas"] = (float(optim["adam-beta1"]), float(optim["adam-beta2"]))
        group["eps"] = float(optim["adam-eps"])
    group["params"] = list(range(len(names)))
    states = {}
    for index, name in enumerate(names):
        # Adagrad: an int, as the reference's AdagradWithGradClip (torch 1.x) counts it; Adam: a
        # tensor, which torch.optim.Adam needs since 1.12 (and 1.x accepts).
        entry = {"step": step if optimizer == "adagrad" else torch.tensor(float(step))}
        for slot in SLOTS[optimizer]:
            tensor = slots.get(slot, {}).get(adaspan_name(name))
            if tensor is None:
                fail(f"'{args.checkpoint}' has no optimizer/{slot}/{adaspan_name(name)}")
            entry[slot] = reference_form(name, tensor).clone()
        states[index] = entry
    nbatches = args.nbatches or 1000
    if step % nbatches:
        log(f"warning: step {step} is not a multiple of --nbatches {nbatches}: the reference resumes at iteration "
            f"{step // nbatches} (step {step // nbatches * nbatches + 1}), the model and optimizer as at step {step}")
    saved = {"iter_no": step // nbatches - 1, "model": ordered, "logger": {},
             "optimizer": {"state": states, "param_groups": [group]}}
    if warmup > 0:
        saved["scheduler_iter"] = step
    buffer = io.BytesIO()
    torch.save(saved, buffer)  # whole in memory first: a failed write leaves no half file at --out
    directory = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"exported {args.checkpoint} (step {step}) -> {args.out} (iter_no {saved['iter_no']}, vocabulary "
          f"{len(ids)})")
    print("evaluate it with the reference: " + reference_command_line(config, shape, args))


def reference_command_line(config, shape, args):
    """The reference's main.py flags that build and evaluate the same model."""
    m, d, o = config["model"], config["data"], config["optim"]
    words = ["python main.py", f"--data {args.reference_data}", f"--nlayers {shape['layers']}",
             f"--hid-sz {shape['d_model']}", f"--inner-hid-sz {shape['ff']}", f"--nheads {shape['heads']}",
             f"--attn-span {shape['span']}", f"--block-sz {d['block-size']}", f"--batch-sz {d['batch-size']}",
             f"--dropout {m.get('dropout', 0)}", f"--optim {o['optimizer']}", f"--lr {o['lr']}"]
    if int(o.get("warmup-steps", 0)) > 0:
        words.append(f"--lr-warmup {o['warmup-steps']}")
    words.append(f"--grad-clip {o.get('grad-clip', 0)}")
    if shape["adaptive"]:
        words += ["--adapt-span", f"--adapt-span-loss {m.get('span-loss-coeff', 0)}",
                  f"--adapt-span-ramp {int(m.get('span-ramp', 32))}", "--adapt-span-cache"]
    words += [f"--nbatches {args.nbatches or 1000}", f"--checkpoint {args.out}", "--full-eval-mode"]
    return " ".join(words)


def main(argv):
    parser = argparse.ArgumentParser(prog="reference_checkpoint.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import")
    imp.add_argument("checkpoint")
    imp.add_argument("--out", required=True)
    imp.add_argument("--reference-data", required=True)
    imp.add_argument("--config-template", required=True)
    imp.add_argument("--batch-size", type=int, default=64)
    imp.add_argument("--block-size", type=int, default=64)
    imp.add_argument("--span-ramp", type=float, default=32)
    imp.add_argument("--span-loss-coeff", type=float, default=0.0)
    imp.add_argument("--dropout", type=float, default=0.0)
    imp.add_argument("--warmup-steps", type=int, default=None)
    imp.add_argument("--nbatches", type=int, default=None)
    imp.add_argument("--seed", type=int, default=1)
    imp.add_argument("--weights-only", action="store_true")
    exp = sub.add_parser("export")
    exp.add_argument("checkpoint")
    exp.add_argument("--out", required=True)
    exp.add_argument("--reference-data", required=True)
    exp.add_argument("--nbatches", type=int, default=None)
    args = parser.parse_args(argv)
    prog = f"adaspan {args.command} reference"
    try:
        (run_import if args.command == "import" else run_export)(args)
    except ImportError_ as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
