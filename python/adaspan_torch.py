"""An adaspan checkpoint as a plain PyTorch module, for notebooks (torch, numpy and h5py only).

    import adaspan_torch
    model = adaspan_torch.load("runs/x/ckpt-1000.h5")
    model.spans()                                   # [layer][head] learned spans, bytes
    log_probs, cache = model(x)                     # x: LongTensor [B, M] of bytes
    log_probs, cache = model(x_next, cache)         # the next block, cache carried

The forward pass follows the C++ model (model/*.cpp) and its CPU attention kernels op for op
(kernels/span_attention.h: x = i + Lc - 1 - j, key_pe[:, S-1-x], m(x) = clamp((R + z - x)/R, 0, 1),
p = m e^s / sum m e^s, or 1.5-entmax over the keys with m > 0, masked and renormalised), and keeps
the caches as the C++ keeps them (--cache kv: each head's keys and values, trimmed to its window
+ 64; --cache hidden: the layer inputs). So `evaluate_logprobs` reproduces `adaspan eval
--logprobs` in float32 (bit for bit on the CPU in the tests; tests/adaspan_torch_check.py).
Inference only: no dropout, no span clamping; differentiable (for saliency and the like).
Not covered: eval's --attn-span (a longer S than trained) and --cp.
"""

import json
import math

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaspanLM", "load", "evaluate_logprobs", "entmax15"]

WINDOW_GRANULE = 64  # windows and caches change size in steps of 64 keys (model/span_policy.h)
TOKEN_TILE = 64  # dynamic spans: queries per tile, each tile with the window of its widest span

# Model options this module knows, and the values it implements. Anything else is refused.
_CHOICES = {
    "attention": ("adaptive", "fixed", "full", "sparse-fixed"),
    "span-mode": ("static", "dynamic"),
    "normalizer": ("softmax", "entmax15", "asentmax"),
    "asentmax-scale": ("head", "hidden"),
    "cache": ("kv", "hidden"),
}
_DEFAULTS = {
    "attention": "adaptive",
    "span-mode": "static",
    "normalizer": "softmax",
    "asentmax-scale": "head",
    "sparse-stride": 32,
    "trim-hidden-cache": True,
    "cache": "kv",
    "span-ramp": 32.0,
    "vocab": 256,
}
_KNOWN = set(_CHOICES) | set(_DEFAULTS) | {
    "layers", "d-model", "heads", "ff-size", "attn-span", "span-init", "span-init-heads",
    "span-loss-coeff", "dropout",
}


def effective_window(z, ramp, max_span, granule=WINDOW_GRANULE):
    """Keys a head with span z reads: floor(z + R) + 1 rounded up to `granule`, at most S."""
    needed = int(math.floor(z + ramp)) + 1
    rounded = (max(needed, 1) + granule - 1) // granule * granule
    return min(rounded, max_span)


def entmax15(x):
    """Exact sort-based 1.5-entmax along the last dim (kernels/entmax.cpp); -inf entries get 0."""
    half = x / 2
    half = half - half.max(-1, keepdim=True).values
    n = half.size(-1)
    ordered = half.sort(-1, descending=True).values
    finite = torch.isfinite(ordered)
    values = torch.where(finite, ordered, torch.zeros_like(ordered))
    k = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    mean = values.cumsum(-1) / k
    mean_sq = (values * values).cumsum(-1) / k
    ss = k * (mean_sq - mean * mean)
    delta = torch.clamp_min((1 - ss) / k, 0)
    tau = mean - torch.sqrt(delta)
    support = ((tau <= ordered) & finite).sum(-1, keepdim=True)  # >= 1: the largest value is in
    threshold = tau.gather(-1, support - 1)
    return torch.clamp_min(half - threshold, 0).pow(2)


def _last_rows(t, rows):
    """The last `rows` rows of t along dim 1 (all of them when t is shorter)."""
    n = t.size(1)
    return t if rows >= n else t[:, n - rows:]


# --- the kernels' layout (kernels/band_layout.cpp): query r of a tile of T sees band columns
# [r, r + W), band column r + c holding its key at distance x = W - 1 - c. ---------------------------
def _unskew(band, window):
    """[.., T, W + T - 1] -> [.., T, W]: out[r, c] = band[r, r + c]."""
    *lead, tile, width = band.shape
    x = F.pad(band.reshape(*lead, tile * width), (0, tile))
    return x.view(*lead, tile, width + 1)[..., :window]


def _skew(probs):
    """[.., T, W] -> [.., T, W + T - 1]: out[r, r + c] = probs[r, c], zero elsewhere."""
    *lead, tile, window = probs.shape
    x = F.pad(probs, (0, tile)).reshape(*lead, tile * (window + tile))[..., :tile * (window + tile - 1)]
    return x.view(*lead, tile, window + tile - 1)


def _rows_zero_padded(t, first, count):
    """Rows [first, first + count) of t along dim 1, zero rows outside [0, t.size(1))."""
    lo, hi = max(first, 0), min(first + count, t.size(1))
    inside = t[:, lo:max(hi, lo)]
    before = lo - first
    after = count - before - inside.size(1)
    return inside if before == 0 and after == 0 else F.pad(inside, (0, 0, before, after))


def _distances(window, like):
    """Window column c holds distance x = W - 1 - c."""
    return torch.arange(window - 1, -1, -1, dtype=like.dtype, device=like.device)


def _span_mask(x, z, ramp):
    """m(x) = clamp((R + z - x) / R, 0, 1)."""
    return torch.clamp((ramp + z - x) / ramp, 0.0, 1.0)


def _by_distance(p, span):
    """Window probabilities [.., W] (column c: x = W - 1 - c) -> [.., S] with column x = distance x."""
    return F.pad(p.flip(-1), (0, span - p.size(-1)))


def _banded(q, k, v, key_pe, mask, scale, window, normalizer):
    """kernels/banded_attention.cpp: queries q [B, T, d] are the last T of k, v [B, Lc + T, d];
    each sees its W keys before it; mask [1|B, 1|T, W]; scale (ASEntmax's lambda) [B, T] or None.
    p = normalizer(s over the keys with m > 0) * m, renormalised. -> (out [B, T, d], p [B, T, W])."""
    block = q.size(1)
    first_key = k.size(1) - block - window  # band row 0: query 0's farthest key
    k_band = _rows_zero_padded(k, first_key, window + block - 1)
    v_band = _rows_zero_padded(v, first_key, window + block - 1)
    pe_window = key_pe[:, key_pe.size(1) - window:]
    s = (_unskew(torch.bmm(q, k_band.transpose(1, 2)), window) + torch.matmul(q, pe_window)) / math.sqrt(q.size(2))
    if scale is not None:
        s = s * scale.unsqueeze(-1)
    s = s.masked_fill(mask <= 0, float("-inf"))
    a = torch.softmax(s, -1) if normalizer == "softmax" else entmax15(s)
    p = a * mask
    p = p / p.sum(-1, keepdim=True)
    return torch.bmm(_skew(p), v_band), p


def _span_tiles(q, k, v, key_pe, z, ramp, window, tile_rows=64):
    """kernels/span_attention_tiles.cpp (one span z per head, softmax): p = m e^s / sum m e^s in
    tiles of 64 queries. q [B, M, d]; k, v [B, Lc + M, d]. -> (out [B, M, d], p [B, M, W])."""
    B, block, dim = q.shape
    tile = min(tile_rows, block)
    tiles = (block + tile - 1) // tile
    padded = tiles * tile
    band = window + tile - 1
    first_key = k.size(1) - block - window
    k_win = _rows_zero_padded(k, first_key, window + padded - 1)
    v_win = _rows_zero_padded(v, first_key, window + padded - 1)
    q_pad = _rows_zero_padded(q, 0, padded).contiguous()
    pe_win = key_pe[:, key_pe.size(1) - window:]
    x = _distances(window, q)
    mask = _span_mask(x, z, ramp)  # [W]
    masked_out = mask == 0
    beyond_ramp = x > (z.detach() + ramp)  # -inf there: exp() of a large score would overflow
    scale = 1.0 / math.sqrt(dim)
    position = torch.matmul(q_pad, pe_win)  # [B, Mp, W]
    outs, probs = [], []
    for t in range(tiles):  # out of place (differentiable), the same values as the C++'s in-place ops
        qt = q_pad[:, t * tile:(t + 1) * tile]
        kt, vt = k_win[:, t * tile:t * tile + band], v_win[:, t * tile:t * tile + band]
        st = (position[:, t * tile:(t + 1) * tile] + _unskew(torch.bmm(qt, kt.transpose(1, 2)), window)) * scale
        st = st.masked_fill(beyond_ramp, float("-inf"))
        row_max = st.masked_fill(masked_out, float("-inf")).max(-1, keepdim=True).values
        e = torch.exp(torch.clamp_max(st - row_max, 40.0))  # the row kernels' exponent cap
        e = e / (e * mask).sum(-1, keepdim=True)
        p = e * mask
        outs.append(torch.bmm(_skew(p), vt))
        probs.append(p)
    return torch.cat(outs, 1)[:, :block].contiguous(), torch.cat(probs, 1)[:, :block]


class _Holder(nn.Module):
    """A module that only holds named parameters (the C++ parameter names)."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape)))


class SpanAttention(nn.Module):
    """One layer's multi-head attention: projections, span policy and normalizer (names as in C++)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, heads = cfg["d-model"], cfg["heads"]
        self.heads, self.d_head = heads, d // heads
        self.proj_query = nn.Linear(d, d, bias=False)
        self.proj_key = nn.Linear(d, d, bias=False)
        self.proj_val = nn.Linear(d, d, bias=False)
        self.proj_out = nn.Linear(d, d, bias=False)
        if cfg["attention"] == "adaptive":
            if cfg["span-mode"] == "static":
                self.span = _Holder(current_val=[heads])
            else:
                self.span = _Holder(dynamic_weight=[heads, d], dynamic_bias=[heads])
        if cfg["normalizer"] == "asentmax":
            if cfg["asentmax-scale"] == "head":
                self.asentmax = _Holder(beta=[heads], gamma=[heads])
            else:
                self.asentmax = nn.Module()
                self.asentmax.beta_proj = nn.Linear(d, heads)
                self.asentmax.gamma_proj = nn.Linear(d, heads)
        self.token_spans = None  # dynamic spans: z_t of the last forward, [B, M, H]
        self.record_attention = False
        self.attention = None  # with record_attention: [B, H, M, S] probabilities by distance x

    # --- which keys each head sees -------------------------------------------------------------
    def _static_z(self):
        """[H] float32 spans z_h = S * current_val (the tensor the C++ kernels get)."""
        return self.span.current_val * float(self.cfg["attn-span"])

    def head_spans(self):
        """Each head's span in bytes (static: S * current_val; fixed windows: S)."""
        S = self.cfg["attn-span"]
        if self.cfg["attention"] != "adaptive":
            return [float(S)] * self.heads
        if self.cfg["span-mode"] == "static":
            return [float(c) * S for c in self.span.current_val.detach().double().cpu()]
        return [float(z) for z in torch.sigmoid(self.span.dynamic_bias.detach().double().cpu()) * S]

    def _token_spans(self, h):
        """Dynamic spans z_t = S * sigmoid(v_h . x_t / sqrt(d) + b_h): [B, M, H]."""
        scale = 1.0 / math.sqrt(self.cfg["d-model"])
        z = torch.sigmoid(F.linear(h, self.span.dynamic_weight) * scale + self.span.dynamic_bias)
        return z * float(self.cfg["attn-span"])

    def _windows(self, z_tokens):
        """Keys each head needs this block (model/span_policy.cpp windows())."""
        cfg = self.cfg
        S, R = cfg["attn-span"], cfg["span-ramp"]
        if cfg["attention"] != "adaptive":
            return [S] * self.heads
        if cfg["span-mode"] == "static":
            return [effective_window(z, R, S) for z in self.head_spans()]
        widest = z_tokens.detach().reshape(-1, self.heads).max(0).values.double().cpu()
        return [effective_window(float(w), R, S) for w in widest]

    def hidden_cache_size(self):
        """Rows the hidden cache keeps (the reference's --adapt-span-cache for static spans)."""
        cfg = self.cfg
        S = cfg["attn-span"]
        static = cfg["attention"] == "adaptive" and cfg["span-mode"] == "static"
        if not static or not cfg["trim-hidden-cache"]:
            return S
        max_c = float(self.span.current_val.detach().max())
        max_size = min(max(int(math.ceil(max_c * S)) + int(cfg["span-ramp"]), 0), S)
        trim_len = min(S - 1, S - max_size) // WINDOW_GRANULE * WINDOW_GRANULE
        return min(S, S - trim_len + WINDOW_GRANULE)

    # --- ASEntmax's per-query score scale --------------------------------------------------------
    def _scale(self, h, head, first, count, keys_before, window):
        """lambda = 1 + beta (log n)^gamma of queries [first, first + count), [B, count], where n - 2 =
        keys the query sees, min(keys_before + r, window); None without ASEntmax."""
        if self.cfg["normalizer"] != "asentmax":
            return None
        seen = torch.clamp_max(torch.arange(count, dtype=h.dtype, device=h.device) + float(keys_before),
                               float(window))
        log_n = torch.log(seen + 2).unsqueeze(0)  # [1, T]
        if self.cfg["asentmax-scale"] == "head":
            beta, gamma = self.asentmax.beta[head], self.asentmax.gamma[head]
        else:
            x = h[:, first:first + count]
            bp, gp = self.asentmax.beta_proj, self.asentmax.gamma_proj
            beta = F.softplus(F.linear(x, bp.weight[head].unsqueeze(0), bp.bias[head:head + 1])).squeeze(-1)
            gamma = 2 * torch.tanh(F.linear(x, gp.weight[head].unsqueeze(0), gp.bias[head:head + 1])).squeeze(-1)
        return (1 + beta * torch.pow(log_n, gamma)).expand(h.size(0), count)

    # --- one head, computed as the C++ kernels compute it ---------------------------------------
    def _head(self, h, head, q, k, v, key_pe, window, position, z_tokens):
        """Head `head`: q [B, M, dh], k, v [B, Lc + M, dh] (cache, then block) -> [B, M, dh], and
        with record_attention its probabilities by distance, [B, M, S] (else None)."""
        cfg = self.cfg
        block, cache_len = q.size(1), k.size(1) - q.size(1)
        S, R, normalizer = cfg["attn-span"], float(cfg["span-ramp"]), cfg["normalizer"]
        record = self.record_attention
        if cfg["attention"] == "adaptive" and z_tokens is None:  # one learned span per head
            z = self._static_z()[head]
            if normalizer == "softmax":
                out, p = _span_tiles(q, k, v, key_pe, z, R, window)
            else:
                mask = _span_mask(_distances(window, z), z, R).view(1, 1, window)
                scale = self._scale(h, head, 0, block, cache_len, window)
                out, p = _banded(q, k, v, key_pe, mask, scale, window, normalizer)
            return out, (_by_distance(p, S) if record else None)
        if cfg["attention"] == "adaptive":  # per-token spans: tiles of 64 queries, each with its window
            outs, probs = [], []
            for first in range(0, block, TOKEN_TILE):
                count = min(TOKEN_TILE, block - first)
                z = z_tokens[:, first:first + count, head]  # [B, T]
                tile_window = effective_window(float(z.detach().max()), R, S)
                mask = _span_mask(_distances(tile_window, z).view(1, 1, tile_window), z.unsqueeze(-1), R)
                scale = self._scale(h, head, first, count, cache_len + first, tile_window)
                seen = cache_len + first + count
                out, p = _banded(q[:, first:first + count], k[:, :seen], v[:, :seen], key_pe, mask, scale,
                                 tile_window, normalizer)
                outs.append(out)
                probs.append(_by_distance(p, S) if record else None)
            return torch.cat(outs, 1), (torch.cat(probs, 1) if record else None)
        if cfg["attention"] == "sparse-fixed":  # the c nearest keys and stream positions p = c-1 mod c
            c = cfg["sparse-stride"]
            x = torch.arange(window - 1, -1, -1, device=q.device).view(1, window)
            query = torch.arange(block, device=q.device).view(block, 1) + position % c
            summary = torch.remainder(query - 1 - x, c) == c - 1
            mask = ((x < c) | summary).to(q.dtype).unsqueeze(0)
        else:  # fixed, full: the last S keys, all of weight 1
            mask = torch.ones(1, 1, window, dtype=q.dtype, device=q.device)
        scale = self._scale(h, head, 0, block, cache_len, window)
        out, p = _banded(q, k, v, key_pe, mask, scale, window, normalizer)
        return out, (_by_distance(p, S) if record else None)

    def _split(self, t):
        """[B, L, d] -> H tensors [B, L, dh]."""
        return list(t.view(t.size(0), t.size(1), self.heads, self.d_head).permute(0, 2, 1, 3).contiguous().unbind(1))

    def forward(self, h, cache, key_pe):
        """h: [B, M, d], the layer input; cache: this layer's (None: empty). -> (out, next cache)."""
        cfg = self.cfg
        B, M, _ = h.shape
        position = cache["position"] if cache else 0
        z_tokens = self._token_spans(h) if cfg["attention"] == "adaptive" and cfg["span-mode"] == "dynamic" else None
        self.token_spans = z_tokens.detach() if z_tokens is not None else None
        windows = self._windows(z_tokens)
        q = self._split(self.proj_query(h))
        nxt = {"position": position + M}
        if cfg["cache"] == "hidden":
            stored = cache.get("hidden") if cache else None
            rows = min(stored.size(1) if stored is not None else 0, max(windows))
            h_all = torch.cat([_last_rows(stored, rows), h], 1) if rows > 0 else h
            keys, values = self._split(self.proj_key(h_all)), self._split(self.proj_val(h_all))
            keep = self.hidden_cache_size()
            kept = h.detach()
            if keep > M and stored is not None:
                kept = torch.cat([_last_rows(stored, keep - M), kept], 1)
            nxt["hidden"] = _last_rows(kept, keep)
        else:
            keys, values = self._split(self.proj_key(h)), self._split(self.proj_val(h))
            nxt["keys"], nxt["values"] = [], []
            for head in range(self.heads):
                if cache and cache["keys"][head].size(1) > 0:
                    keys[head] = torch.cat([cache["keys"][head], keys[head]], 1)
                    values[head] = torch.cat([cache["values"][head], values[head]], 1)
                keep = min(cfg["attn-span"], windows[head] + WINDOW_GRANULE)  # the window + 64 of slack
                nxt["keys"].append(_last_rows(keys[head].detach(), keep).contiguous())
                nxt["values"].append(_last_rows(values[head].detach(), keep).contiguous())
        outs, probs = [], []
        for head in range(self.heads):
            out, p = self._head(h, head, q[head], keys[head], values[head], key_pe, windows[head], position, z_tokens)
            outs.append(out)
            probs.append(p)
        self.attention = torch.stack(probs, 1) if self.record_attention else None
        out = torch.stack(outs, 2).reshape(B, M, self.heads * self.d_head)
        return self.proj_out(out), nxt


class TransformerLayer(nn.Module):
    """Post-norm layer: LN1(h + attn(h)), then LN2(x + fc2(relu(fc1(x))))."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg["d-model"]
        self.attn = SpanAttention(cfg)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.ff = nn.Module()
        self.ff.fc1 = nn.Linear(d, cfg["ff-size"])
        self.ff.fc2 = nn.Linear(cfg["ff-size"], d)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(self, h, cache, key_pe):
        a, nxt = self.attn(h, cache, key_pe)
        x = self.norm1(h + a)
        return self.norm2(x + self.ff.fc2(torch.relu(self.ff.fc1(x)))), nxt


class AdaspanLM(nn.Module):
    """The adaspan byte LM. Parameter names are the checkpoint's (`model.state_dict()` keys).

    forward(x, cache=None) -> (log_probs [B, M, vocab], next_cache). The cache is a list with one
    dict per layer ({"position", "keys", "values"} for --cache kv: per-head [B, C_h, d_head];
    {"position", "hidden"} for --cache hidden). Set `record_attention = True` to keep, after each
    forward, `attention(layer)`: [B, H, M, S] probabilities of query i at distance x (key i-1-x).
    """

    def __init__(self, config, stored_spans=None):
        super().__init__()
        self.config = config
        cfg = _model_options(config)
        self.cfg = cfg
        if cfg["d-model"] % cfg["heads"] != 0:
            raise ValueError(f"d-model {cfg['d-model']} is not divisible by heads {cfg['heads']}")
        self.in_emb = nn.Embedding(cfg["vocab"], cfg["d-model"])
        self.key_pe = nn.Parameter(torch.zeros(cfg["d-model"] // cfg["heads"], cfg["attn-span"]))
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg["layers"]))
        self.out_emb = nn.Linear(cfg["d-model"], cfg["vocab"])
        self._stored_spans = stored_spans

    @property
    def record_attention(self):
        return self.layers[0].attn.record_attention

    @record_attention.setter
    def record_attention(self, on):
        for layer in self.layers:
            layer.attn.record_attention = bool(on)

    def spans(self):
        """Learned spans in bytes, [layer][head], as `adaspan inspect` prints them (dynamic spans:
        the checkpoint's mean z_t of its last training block; see token_spans for this forward's)."""
        dynamic = self.cfg["attention"] == "adaptive" and self.cfg["span-mode"] == "dynamic"
        if dynamic and self._stored_spans is not None:
            return [list(map(float, row)) for row in self._stored_spans]
        return [layer.attn.head_spans() for layer in self.layers]

    def token_spans(self, layer):
        """Dynamic spans: z_t of the last forward in layer `layer`, [B, M, H] (None otherwise)."""
        return self.layers[layer].attn.token_spans

    def attention(self, layer):
        """With record_attention: the last forward's [B, H, M, S] probabilities by distance."""
        return self.layers[layer].attn.attention

    def forward(self, x, cache=None):
        h = self.in_emb(x)
        nxt = []
        for l, layer in enumerate(self.layers):
            h, c = layer(h, cache[l] if cache else None, self.key_pe)
            nxt.append(c)
        return torch.log_softmax(self.out_emb(h), -1), nxt


def _model_options(config):
    """The model section with defaults filled in; ValueError for anything not implemented here."""
    model = dict(config.get("model", {}))
    unknown = sorted(set(model) - _KNOWN)
    if unknown:
        raise ValueError(f"adaspan_torch does not know the model option(s) {', '.join(unknown)} "
                         "(a newer adaspan?); refusing rather than computing another model")
    cfg = dict(_DEFAULTS)
    cfg.update(model)
    for key in ("layers", "d-model", "heads", "ff-size", "attn-span"):
        if key not in cfg:
            raise ValueError(f"the checkpoint's config has no model option '{key}'")
    for key, choices in _CHOICES.items():
        if cfg[key] not in choices:
            raise ValueError(f"--{key} {cfg[key]} is not supported by adaspan_torch "
                             f"(it implements {', '.join(choices)})")
    if cfg["span-mode"] == "dynamic" and cfg["attention"] != "adaptive":
        raise ValueError(f"--span-mode dynamic needs --attention adaptive (got {cfg['attention']})")
    return cfg


def load(path, device="cpu"):
    """Read an adaspan checkpoint (HDF5) into an AdaspanLM in eval mode on `device`."""
    with h5py.File(path, "r") as f:
        version = int(f.attrs.get("format_version", 1))
        if version > 1:
            raise ValueError(f"{path}: checkpoint format_version {version} is newer than this reader (1)")
        if "complete" in f.attrs and int(f.attrs["complete"]) != 1:
            raise ValueError(f"{path}: not a complete checkpoint")
        raw = f.attrs["config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        stored = {name: torch.from_numpy(np.asarray(f["model"][name][()], dtype=np.float32))
                  for name in f["model"]}
        spans = np.asarray(f["spans"][()], dtype=np.float64) if "spans" in f else None
    model = AdaspanLM(config, stored_spans=spans)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise ValueError(f"{path} has no dataset model/{missing[0]} (this config needs it)")
    extra = sorted(set(stored) - set(expected))
    if extra:
        raise ValueError(f"{path} has model/{extra[0]}, which this config's model does not have")
    for name, t in stored.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise ValueError(f"{path}: model/{name} is {tuple(t.shape)}, expected {tuple(expected[name].shape)}")
    model.load_state_dict(stored)
    return model.to(device).eval()


def evaluate_logprobs(model, data, batch_size=None, block_size=None):
    """Natural log-probability of every data byte, as `adaspan eval --logprobs` writes it.

    data: bytes. The text is cut into `batch_size` streams (stream k: bytes [k*N/B, (k+1)*N/B)),
    all read start to end in blocks of `block_size` with the cache carried (trainer/file_evaluation.cpp).
    Returns float32 [N]; NaN where nothing predicts the byte (each stream's first). Defaults: as trained.
    """
    data = bytes(data)
    n = len(data)
    B = int(batch_size or model.config["data"]["batch-size"])
    M = int(block_size or model.config["data"]["block-size"])
    if B <= 0 or 2 * B > n:
        raise ValueError(f"evaluation needs at least 2 bytes per stream: {n} bytes, {B} streams")
    begin = [k * n // B for k in range(B + 1)]
    longest = max(begin[k + 1] - begin[k] for k in range(B))
    blocks = (longest - 1 + M - 1) // M
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.full(n, np.nan, dtype=np.float32)
    device = next(model.parameters()).device
    cache = None
    with torch.no_grad():
        for b in range(blocks):
            x = np.zeros((B, M), dtype=np.int64)  # streams past their end read zeros
            y = np.full((B, M), -1, dtype=np.int64)
            for r in range(B):
                start, end = begin[r] + b * M, begin[r + 1]
                if start + 1 >= end:
                    continue
                count = min(M + 1, end - start)
                chunk = buf[start:start + count]
                x[r, :min(count, M)] = chunk[:M]
                y[r, :count - 1] = chunk[1:]
            log_probs, cache = model(torch.from_numpy(x).to(device), cache)
            lp = log_probs.gather(2, torch.from_numpy(y).clamp_min(0).to(device).unsqueeze(-1)).squeeze(-1)
            lp = lp.float().cpu().numpy()
            for r in range(B):
                valid = y[r] >= 0
                target = begin[r] + b * M + 1
                out[target:target + int(valid.sum())] = lp[r][valid]
    return out
