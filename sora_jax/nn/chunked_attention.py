"""Block-wise (online-softmax) attention whose memory grows linearly with sequence length.

Keys and values are processed in chunks of `chunk_size` with a running max and running sum
(Milakov & Gimelshein 2018; the forward pass of FlashAttention). A custom VJP keeps only
q, k, v, the output and the per-row log-sum-exp for the backward pass and recomputes each
chunk's probabilities there, so neither pass ever holds a [T, S] matrix.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_NEG = -1e30  # finite "minus infinity": keeps exp() and max() free of NaNs on fully masked rows


def _split_keys(x, num_chunks, chunk, axis):
    """Pad `axis` to num_chunks * chunk and move the chunk index to the front."""
    pad = num_chunks * chunk - x.shape[axis]
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = jnp.pad(x, widths)
    shape = x.shape[:axis] + (num_chunks, chunk) + x.shape[axis + 1:]
    return jnp.moveaxis(x.reshape(shape), axis, 0)


def _group_heads(x_BxNxTxS, num_kv_heads):
    """[B, N|1, T, c] -> [B, K|1, G|1, T, c] matching the grouped query layout."""
    b, n, t, c = x_BxNxTxS.shape
    if n == 1:
        return x_BxNxTxS.reshape(b, 1, 1, t, c)
    return x_BxNxTxS.reshape(b, num_kv_heads, n // num_kv_heads, t, c)


def _prepare(q, k, v, mask, bias, chunk):
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    num_chunks = -(-S // chunk)
    q_BxKxGxTxH = q.reshape(B, T, K, N // K, H).transpose(0, 2, 3, 1, 4).astype(jnp.float32)
    k_chunks = _split_keys(k.transpose(0, 2, 1, 3), num_chunks, chunk, axis=2)  # [C, B, K, c, H]
    v_chunks = _split_keys(v.transpose(0, 2, 1, 3), num_chunks, chunk, axis=2)
    if mask is not None:
        mask = jnp.broadcast_to(mask, mask.shape[:3] + (S,))
        mask = _split_keys(mask, num_chunks, chunk, axis=3)  # [C, Bm, Nm, Tm, c]
    if bias is not None:
        bias = jnp.broadcast_to(bias, bias.shape[:3] + (S,)).astype(jnp.float32)
        bias = _split_keys(bias, num_chunks, chunk, axis=3)
    return q_BxKxGxTxH, k_chunks, v_chunks, mask, bias, num_chunks


def _chunk_scores(q, k_chunk, mask_chunk, bias_chunk, chunk_index, *, S, chunk, scale, is_causal):
    """Scaled, biased logits of one key chunk and where they are valid: [B, K, G, T, c]."""
    K = k_chunk.shape[1]
    s = jnp.einsum("bkgth,bkch->bkgtc", q, k_chunk.astype(jnp.float32)) * scale
    if bias_chunk is not None:
        s = s + _group_heads(bias_chunk, K)
    key_pos = chunk_index * chunk + jnp.arange(chunk)
    valid = (key_pos < S)[None, None, None, None, :]
    if is_causal:
        query_pos = jnp.arange(q.shape[3])
        valid = valid & (key_pos[None, :] <= query_pos[:, None])[None, None, None]
    if mask_chunk is not None:
        valid = valid & _group_heads(mask_chunk, K)
    return jnp.where(valid, s, _NEG), valid


def _forward(q, k, v, mask, bias, scale, is_causal, chunk):
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    qf, k_chunks, v_chunks, mask_c, bias_c, num_chunks = _prepare(q, k, v, mask, bias, chunk)
    scores = functools.partial(_chunk_scores, S=S, chunk=chunk, scale=scale, is_causal=is_causal)

    def body(carry, xs):
        m, l, acc = carry
        i, k_i, v_i, mask_i, bias_i = xs
        s, valid = scores(qf, k_i, mask_i, bias_i, i)
        m_new = jnp.maximum(m, s.max(axis=-1))
        p = jnp.where(valid, jnp.exp(s - m_new[..., None]), 0.0)
        correction = jnp.exp(m - m_new)
        l = l * correction + p.sum(axis=-1)
        acc = acc * correction[..., None] + jnp.einsum("bkgtc,bkch->bkgth", p, v_i.astype(jnp.float32))
        return (m_new, l, acc), None

    G = N // K
    init = (jnp.full((B, K, G, T), _NEG, jnp.float32), jnp.zeros((B, K, G, T), jnp.float32),
            jnp.zeros((B, K, G, T, H), jnp.float32))
    xs = (jnp.arange(num_chunks), k_chunks, v_chunks, mask_c, bias_c)
    (m, l, acc), _ = jax.lax.scan(body, init, xs)
    has_keys = l > 0.0
    out = jnp.where(has_keys[..., None], acc / jnp.where(has_keys, l, 1.0)[..., None], 0.0)
    lse = jnp.where(has_keys, m + jnp.log(jnp.where(has_keys, l, 1.0)), 0.0)
    return out, lse  # [B, K, G, T, H] float32, [B, K, G, T]


def _to_output(out_BxKxGxTxH, dtype):
    B, K, G, T, H = out_BxKxGxTxH.shape
    return out_BxKxGxTxH.transpose(0, 3, 1, 2, 4).reshape(B, T, K * G, H).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _chunked(q, k, v, mask, bias, scale, is_causal, chunk):
    out, _ = _forward(q, k, v, mask, bias, scale, is_causal, chunk)
    return _to_output(out, q.dtype)


def _chunked_fwd(q, k, v, mask, bias, scale, is_causal, chunk):
    out, lse = _forward(q, k, v, mask, bias, scale, is_causal, chunk)
    return _to_output(out, q.dtype), (q, k, v, mask, bias, out, lse)


def _chunked_bwd(scale, is_causal, chunk, residuals, d_out):
    q, k, v, mask, bias, out, lse = residuals
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    qf, k_chunks, v_chunks, mask_c, bias_c, num_chunks = _prepare(q, k, v, mask, bias, chunk)
    d_out = d_out.reshape(B, T, K, N // K, H).transpose(0, 2, 3, 1, 4).astype(jnp.float32)
    delta = jnp.sum(d_out * out, axis=-1)  # [B, K, G, T]
    scores = functools.partial(_chunk_scores, S=S, chunk=chunk, scale=scale, is_causal=is_causal)

    def body(dq, xs):
        i, k_i, v_i, mask_i, bias_i = xs
        s, valid = scores(qf, k_i, mask_i, bias_i, i)
        p = jnp.where(valid, jnp.exp(s - lse[..., None]), 0.0)
        k_i, v_i = k_i.astype(jnp.float32), v_i.astype(jnp.float32)
        dv_i = jnp.einsum("bkgtc,bkgth->bkch", p, d_out)
        dp = jnp.einsum("bkgth,bkch->bkgtc", d_out, v_i)
        ds = p * (dp - delta[..., None])
        dq = dq + jnp.einsum("bkgtc,bkch->bkgth", ds, k_i) * scale
        dk_i = jnp.einsum("bkgtc,bkgth->bkch", ds, qf) * scale
        d_bias_i = None
        if bias_i is not None:
            # Sum the [B, K, G, T, c] gradient down to the bias chunk's broadcast shape.
            d_bias_i = ds.reshape(B, N, T, -1)
            for axis, size in enumerate(bias_i.shape[:3]):
                if size == 1:
                    d_bias_i = d_bias_i.sum(axis=axis, keepdims=True)
        return dq, (dk_i, dv_i, d_bias_i)

    xs = (jnp.arange(num_chunks), k_chunks, v_chunks, mask_c, bias_c)
    dq, (dk, dv, d_bias) = jax.lax.scan(body, jnp.zeros_like(qf), xs)

    def merge_keys(x_CxBxKxcxH):  # [C, B, K, c, H] -> [B, S, K, H]
        x = jnp.moveaxis(x_CxBxKxcxH, 0, 2).reshape(B, K, num_chunks * chunk, H)[:, :, :S]
        return x.transpose(0, 2, 1, 3)

    dq = dq.transpose(0, 3, 1, 2, 4).reshape(B, T, N, H).astype(q.dtype)
    dk = merge_keys(dk).astype(k.dtype)
    dv = merge_keys(dv).astype(v.dtype)
    if bias is not None:
        d_bias = jnp.moveaxis(d_bias, 0, 3)
        d_bias = d_bias.reshape(d_bias.shape[:3] + (num_chunks * chunk,))[..., :S]
        if bias.shape[3] == 1:
            d_bias = d_bias.sum(axis=3, keepdims=True)
        d_bias = d_bias.astype(bias.dtype)
    return dq, dk, dv, None, d_bias


_chunked.defvjp(_chunked_fwd, _chunked_bwd)


def chunked_attention(q, k, v, mask=None, bias=None, *, scale, is_causal=False, chunk_size=512):
    """Online-softmax attention over key chunks; see the module docstring."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunk = min(chunk_size, k.shape[1])
    return _chunked(q, k, v, mask, bias, float(scale), bool(is_causal), int(chunk))
