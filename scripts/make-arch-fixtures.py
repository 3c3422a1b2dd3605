#!/usr/bin/env python3
"""Tiny Qwen3 (also with YaRN rope scaling) and Gemma 3 models (random weights, F32 GGUF) and
their reference logits.

No llama.cpp or transformers build is at hand for these two architectures, so the reference is
an independent float64 forward pass written here with NumPy from the Hugging Face modeling code
(transformers' modeling_qwen3.py and modeling_gemma3.py): Qwen3's per-head q_norm/k_norm before
RoPE, Gemma 3's (1 + w) norms, sliding windows on five layers of six with RoPE base 10,000 there
and the config's base and linear scaling elsewhere, query_pre_attn_scalar. The GGUF files are
written the way llama.cpp's convert_hf_to_gguf.py writes these models (Gemma's norms stored as
1 + w, no Q/K permutation for NEOX-style RoPE). The one deliberate non-HF step: Gemma's GELU is
taken through fp16 as llama.cpp's CPU backend does (slm does the same), so that the F32
comparison can stay at 1e-4.

Usage: /usr/bin/python3 scripts/make-arch-fixtures.py tests/data/arch   (Debian's python3-numpy)
Writes <dir>/{tiny-qwen3,tiny-qwen3-yarn,tiny-gemma3}.gguf and .batch.logits (the fixtures' logits
format).
"""
import math
import struct
import sys
from pathlib import Path

import numpy as np

GGUF_U32, GGUF_F32, GGUF_STRING = 4, 6, 8


def write_gguf(path, arch, meta, tensors):
    """meta: {key: value} (int -> u32, float -> f32, str -> string); tensors: [(name, float32 array)]."""
    def gstr(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta) + 1))
    items = [("general.architecture", arch)] + list(meta.items())
    for k, v in items:
        out += gstr(k)
        if isinstance(v, str):
            out += struct.pack("<I", GGUF_STRING) + gstr(v)
        elif isinstance(v, int):
            out += struct.pack("<II", GGUF_U32, v)
        else:
            out += struct.pack("<If", GGUF_F32, v)
    offset, blobs = 0, []
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype="<f4")
        out += gstr(name) + struct.pack("<I", a.ndim)
        for d in reversed(a.shape):  # GGUF lists the fastest-moving dimension first
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", 0, offset)  # type F32
        blobs.append(a.tobytes())
        offset += (len(blobs[-1]) + 31) // 32 * 32
    out += b"\0" * ((-len(out)) % 32)
    for b in blobs:
        out += b + b"\0" * ((-len(b)) % 32)
    Path(path).write_bytes(bytes(out))


def write_logits(path, tokens, logits):
    n, v = logits.shape
    data = struct.pack("<ii", n, v) + np.asarray(tokens, "<i4").tobytes() + logits.astype("<f4").tobytes()
    Path(path).write_bytes(data)


def rms(x, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def yarn_inv_freq(d, base, factor, original_ctx, beta_fast=32.0, beta_slow=1.0):
    """transformers' _compute_yarn_parameters (truncate on): inverse frequencies, attention factor."""
    pos_freqs = base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    extrap, interp = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)

    def corr_dim(rot):
        return (d * math.log(original_ctx / (rot * 2 * math.pi))) / (2 * math.log(base))

    low, high = max(math.floor(corr_dim(beta_fast)), 0), min(math.ceil(corr_dim(beta_slow)), d - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrap_factor = 1 - ramp
    inv = interp * (1 - extrap_factor) + extrap * extrap_factor
    return inv, 0.1 * math.log(factor) + 1.0


def rope_neox(x, pos, base, scale, yarn=None):
    """x: [T, heads, d]; rotates pairs (i, i + d/2) by pos * scale * base^(-2i/d), or with yarn
    = (factor, original context) by transformers' YaRN frequencies and attention factor."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d) * scale
    mscale = 1.0
    if yarn:
        inv, mscale = yarn_inv_freq(d, base, *yarn)
    ang = pos[:, None] * inv[None, :]  # [T, d/2]
    c, s = mscale * np.cos(ang)[:, None, :], mscale * np.sin(ang)[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention(q, k, v, scale, window):
    """q [T,H,d], k/v [T,Hkv,d]; causal, optional sliding window (i - j < window)."""
    T, H, _ = q.shape
    group = H // k.shape[1]
    out = np.zeros((T, H, v.shape[2]))
    for h in range(H):
        s = q[:, h, :] @ k[:, h // group, :].T * scale
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        mask = j > i
        if window:
            mask |= (i - j) >= window
        s = np.where(mask, -np.inf, s)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, h // group, :]
    return out


def gelu_fp16_table(x):
    """llama.cpp's GELU: tanh GELU of the fp16 value, stored as fp16; exact outside (-10, 10)."""
    x16 = x.astype(np.float16).astype(np.float64)
    g = 0.5 * x16 * (1 + np.tanh(math.sqrt(2 / math.pi) * x16 * (1 + 0.044715 * x16 * x16)))
    g = g.astype(np.float16).astype(np.float64)
    return np.where(x <= -10, 0.0, np.where(x >= 10, x, g))


def silu(x):
    return x / (1 + np.exp(-x))


class Maker:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def mat(self, n_out, n_in):  # [out, in], N(0, 1/sqrt(in)) as the shared fixtures
        return (self.rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)).astype(np.float32)

    def vec(self, n, mean, std):
        return (mean + std * self.rng.standard_normal(n)).astype(np.float32)


def qwen3(out_dir, stem="tiny-qwen3", yarn=None, seed=3):
    """yarn: (factor, original context) for a model with YaRN rope scaling."""
    V, E, F, H, Hkv, D, L, eps, base = 256, 32, 64, 4, 2, 16, 2, 1e-6, 1e6
    m = Maker(seed)
    W = {"token_embd.weight": (m.rng.standard_normal((V, E)) / math.sqrt(E)).astype(np.float32)}
    for l in range(L):
        p = f"blk.{l}."
        W[p + "attn_norm.weight"] = m.vec(E, 1, 0.05)
        W[p + "attn_q.weight"] = m.mat(H * D, E)
        W[p + "attn_k.weight"] = m.mat(Hkv * D, E)
        W[p + "attn_v.weight"] = m.mat(Hkv * D, E)
        W[p + "attn_q_norm.weight"] = m.vec(D, 1, 0.2)
        W[p + "attn_k_norm.weight"] = m.vec(D, 1, 0.2)
        W[p + "attn_output.weight"] = m.mat(E, H * D)
        W[p + "ffn_norm.weight"] = m.vec(E, 1, 0.05)
        W[p + "ffn_gate.weight"] = m.mat(F, E)
        W[p + "ffn_up.weight"] = m.mat(F, E)
        W[p + "ffn_down.weight"] = m.mat(E, F)
    W["output_norm.weight"] = m.vec(E, 1, 0.05)
    tokens = m.rng.integers(0, V, 30)

    w = {k: v.astype(np.float64) for k, v in W.items()}
    T, pos = len(tokens), np.arange(len(tokens), dtype=np.float64)
    x = w["token_embd.weight"][tokens]
    for l in range(L):
        p = f"blk.{l}."
        h = rms(x, eps) * w[p + "attn_norm.weight"]
        q = (h @ w[p + "attn_q.weight"].T).reshape(T, H, D)
        k = (h @ w[p + "attn_k.weight"].T).reshape(T, Hkv, D)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, Hkv, D)
        q = rope_neox(rms(q, eps) * w[p + "attn_q_norm.weight"], pos, base, 1.0, yarn)
        k = rope_neox(rms(k, eps) * w[p + "attn_k_norm.weight"], pos, base, 1.0, yarn)
        a = attention(q, k, v, 1 / math.sqrt(D), 0).reshape(T, H * D)
        x = x + a @ w[p + "attn_output.weight"].T
        h = rms(x, eps) * w[p + "ffn_norm.weight"]
        x = x + (silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    logits = (rms(x, eps) * w["output_norm.weight"]) @ w["token_embd.weight"].T

    meta = {"qwen3.context_length": 256, "qwen3.embedding_length": E, "qwen3.block_count": L,
            "qwen3.feed_forward_length": F, "qwen3.attention.head_count": H,
            "qwen3.attention.head_count_kv": Hkv, "qwen3.attention.key_length": D,
            "qwen3.attention.value_length": D, "qwen3.rope.freq_base": base,
            "qwen3.attention.layer_norm_rms_epsilon": eps, "general.file_type": 0}
    if yarn:  # the keys convert_hf_to_gguf.py writes for rope_scaling yarn
        meta["qwen3.rope.scaling.type"] = "yarn"
        meta["qwen3.rope.scaling.factor"] = float(yarn[0])
        meta["qwen3.rope.scaling.original_context_length"] = int(yarn[1])
    write_gguf(out_dir / f"{stem}.gguf", "qwen3", meta, list(W.items()))
    write_logits(out_dir / f"{stem}.batch.logits", tokens, logits)


def gemma3(out_dir):
    V, E, F, H, Hkv, D, L, eps = 256, 32, 64, 4, 2, 16, 7, 1e-6
    base, local_base, factor, window = 1e6, 10000.0, 8.0, 8
    m = Maker(5)
    hf = {"embed": (m.rng.standard_normal((V, E)) / math.sqrt(E)).astype(np.float32)}
    norms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
             "post_feedforward_layernorm"]
    for l in range(L):
        for n in norms:
            hf[f"{l}.{n}"] = m.vec(E, 0, 0.1)  # Gemma stores w; the model uses 1 + w
        hf[f"{l}.q"] = m.mat(H * D, E)
        hf[f"{l}.k"] = m.mat(Hkv * D, E)
        hf[f"{l}.v"] = m.mat(Hkv * D, E)
        hf[f"{l}.q_norm"] = m.vec(D, 0, 0.2)
        hf[f"{l}.k_norm"] = m.vec(D, 0, 0.2)
        hf[f"{l}.o"] = m.mat(E, H * D)
        hf[f"{l}.gate"] = m.mat(F, E)
        hf[f"{l}.up"] = m.mat(F, E)
        hf[f"{l}.down"] = m.mat(E, F)
    hf["norm"] = m.vec(E, 0, 0.1)
    tokens = m.rng.integers(0, V, 40)

    w = {k: v.astype(np.float64) for k, v in hf.items()}
    gnorm = lambda x, wt: rms(x, eps) * (1.0 + wt)
    T, pos = len(tokens), np.arange(len(tokens), dtype=np.float64)
    x = w["embed"][tokens] * math.sqrt(E)
    for l in range(L):
        sliding = l % 6 != 5  # sliding_window_pattern 6
        b, s = (local_base, 1.0) if sliding else (base, 1.0 / factor)
        h = gnorm(x, w[f"{l}.input_layernorm"])
        q = (h @ w[f"{l}.q"].T).reshape(T, H, D)
        k = (h @ w[f"{l}.k"].T).reshape(T, Hkv, D)
        v = (h @ w[f"{l}.v"].T).reshape(T, Hkv, D)
        q = rope_neox(gnorm(q, w[f"{l}.q_norm"]), pos, b, s)
        k = rope_neox(gnorm(k, w[f"{l}.k_norm"]), pos, b, s)
        a = attention(q, k, v, D ** -0.5, window if sliding else 0).reshape(T, H * D)
        x = x + gnorm(a @ w[f"{l}.o"].T, w[f"{l}.post_attention_layernorm"])
        h = gnorm(x, w[f"{l}.pre_feedforward_layernorm"])
        f = (gelu_fp16_table(h @ w[f"{l}.gate"].T) * (h @ w[f"{l}.up"].T)) @ w[f"{l}.down"].T
        x = x + gnorm(f, w[f"{l}.post_feedforward_layernorm"])
    logits = gnorm(x, w["norm"]) @ w["embed"].T

    one = lambda a: (a.astype(np.float64) + 1.0).astype(np.float32)  # convert_hf_to_gguf's + 1
    W = {"token_embd.weight": hf["embed"]}
    for l in range(L):
        p = f"blk.{l}."
        W[p + "attn_norm.weight"] = one(hf[f"{l}.input_layernorm"])
        W[p + "attn_q.weight"] = hf[f"{l}.q"]
        W[p + "attn_k.weight"] = hf[f"{l}.k"]
        W[p + "attn_v.weight"] = hf[f"{l}.v"]
        W[p + "attn_q_norm.weight"] = one(hf[f"{l}.q_norm"])
        W[p + "attn_k_norm.weight"] = one(hf[f"{l}.k_norm"])
        W[p + "attn_output.weight"] = hf[f"{l}.o"]
        W[p + "post_attention_norm.weight"] = one(hf[f"{l}.post_attention_layernorm"])
        W[p + "ffn_norm.weight"] = one(hf[f"{l}.pre_feedforward_layernorm"])
        W[p + "ffn_gate.weight"] = hf[f"{l}.gate"]
        W[p + "ffn_up.weight"] = hf[f"{l}.up"]
        W[p + "ffn_down.weight"] = hf[f"{l}.down"]
        W[p + "post_ffw_norm.weight"] = one(hf[f"{l}.post_feedforward_layernorm"])
    W["output_norm.weight"] = one(hf["norm"])
    meta = {"gemma3.context_length": 256, "gemma3.embedding_length": E, "gemma3.block_count": L,
            "gemma3.feed_forward_length": F, "gemma3.attention.head_count": H,
            "gemma3.attention.head_count_kv": Hkv, "gemma3.attention.key_length": D,
            "gemma3.attention.value_length": D, "gemma3.rope.freq_base": base,
            "gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": factor,
            "gemma3.attention.sliding_window": window,
            "gemma3.attention.layer_norm_rms_epsilon": eps, "general.file_type": 0}
    write_gguf(out_dir / "tiny-gemma3.gguf", "gemma3", meta, list(W.items()))
    write_logits(out_dir / "tiny-gemma3.batch.logits", tokens, logits)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/arch")
    out.mkdir(parents=True, exist_ok=True)
    qwen3(out)
    # YaRN, factor 4 over an original context of 8: the 30 positions reach well past it.
    qwen3(out, "tiny-qwen3-yarn", yarn=(4.0, 8), seed=4)
    gemma3(out)
    print("numpy", np.__version__, "->", out)
