"""Scaled dot-product attention as a plain function, with three interchangeable implementations.

Shapes: q [B, T, N, H], k and v [B, S, K, H] with K key/value heads dividing N heads
(grouped-query attention: query head n reads key/value head n // (N // K)).
mask: bool, 4-D, broadcastable to [B, N, T, S] (True = attend). bias: float, same broadcast.

All implementations agree on every input, including the corner cases:
  * logits and softmax are float32 whatever the input dtype;
  * a query row whose keys are all masked returns zeros (not an average of the values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sora_jax.nn import chunked_attention as _chunked
from sora_jax.nn.fused_attention import fused_attention
from sora_jax.nn.masks import causal_mask, combine_masks

IMPLEMENTATIONS = ("explicit", "jax", "chunked")


def _check_shapes(q, k, v, mask, bias):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be [batch, length, heads, head_dim]; got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ: {k.shape} vs {v.shape}")
    if q.shape[-1] != k.shape[-1] or q.shape[0] != k.shape[0]:
        raise ValueError(f"q {q.shape} and k {k.shape} disagree on batch or head_dim")
    if q.shape[2] % k.shape[2]:
        raise ValueError(f"num_heads {q.shape[2]} is not a multiple of num_kv_heads {k.shape[2]}")
    for name, x in (("mask", mask), ("bias", bias)):
        if x is not None and x.ndim != 4:
            raise ValueError(f"{name} must be 4-D [batch, heads, queries, keys]; got shape {x.shape}")


def explicit_attention(q, k, v, mask=None, bias=None, *, scale, dropout_rate=0.0, dropout_rng=None):
    """The einsum reference: every other implementation is tested against this one."""
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    q_BxTxKxGxH = q.reshape(B, T, K, N // K, H)
    logits = jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k, preferred_element_type=jnp.float32)
    logits_BxNxTxS = logits.reshape(B, N, T, S) * jnp.float32(scale)
    if bias is not None:
        logits_BxNxTxS = logits_BxNxTxS + bias.astype(jnp.float32)
    if mask is not None:
        logits_BxNxTxS = jnp.where(mask, logits_BxNxTxS, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits_BxNxTxS, axis=-1)
    if mask is not None:
        # Masked keys already have probability 0, except in rows with no key at all: zero those.
        probs = jnp.where(mask, probs, 0.0)
    if dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    probs_BxKxGxTxS = probs.reshape(B, K, N // K, T, S).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs_BxKxGxTxS, v)
    return out.reshape(B, T, N, H)


def _jax_attention(q, k, v, mask, bias, *, scale, is_causal):
    # is_causal goes to jax as a flag (the cuDNN kernel builds it on the fly) rather than a mask.
    out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, is_causal=is_causal)
    if mask is not None:
        # jax averages the values of a fully masked row; we define that row as zeros.
        visible = combine_masks(mask, causal_mask(q.shape[1], k.shape[1]) if is_causal else None)
        any_key_BxTxNx1 = jnp.any(visible, axis=-1, keepdims=True).transpose(0, 2, 1, 3)
        out = jnp.where(any_key_BxTxNx1, out, jnp.zeros((), out.dtype))
    return out


def dot_product_attention(
    q,
    k,
    v,
    mask=None,
    bias=None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    implementation: str = "explicit",
    chunk_size: int = 512,
    dropout_rate: float = 0.0,
    dropout_rng=None,
    deterministic: bool = True,
):
    """softmax(q k^T * scale + bias, masked) v, computed by the chosen implementation.

    "explicit" without bias or dropout runs `fused_attention` (the same numbers, a faster
    backward pass, and the masked half of causal attention skipped); with them, the reference.

    is_causal: query t attends keys s <= t (top-left aligned, as jax.nn.dot_product_attention).
    Chunked attention builds the causal mask block by block, so prefer `is_causal` to passing a
    [T, S] causal mask when memory matters. Attention-probability dropout is only offered by the
    explicit implementation (the others never materialise the probabilities).
    """
    _check_shapes(q, k, v, mask, bias)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    use_dropout = dropout_rate > 0.0 and not deterministic
    if use_dropout and implementation != "explicit":
        raise ValueError(f"attention dropout needs implementation='explicit', not {implementation!r}")
    if use_dropout and dropout_rng is None:
        raise ValueError("attention dropout is on (deterministic=False) but no dropout_rng was given")
    if implementation == "chunked":
        return _chunked.chunked_attention(q, k, v, mask, bias, scale=scale, is_causal=is_causal,
                                          chunk_size=chunk_size)
    if implementation == "jax":
        return _jax_attention(q, k, v, mask, bias, scale=scale, is_causal=is_causal)
    if implementation == "explicit" and bias is None and not use_dropout:
        return fused_attention(q, k, v, mask, scale=scale, is_causal=is_causal)
    if is_causal:
        mask = combine_masks(mask, causal_mask(q.shape[1], k.shape[1]))
    if implementation == "explicit":
        return explicit_attention(q, k, v, mask, bias, scale=scale,
                                  dropout_rate=dropout_rate if use_dropout else 0.0,
                                  dropout_rng=dropout_rng)
    raise ValueError(f"unknown attention implementation {implementation!r}; choose one of {IMPLEMENTATIONS}")


def cached_attention(q, k_new, v_new, cached_k, cached_v, cache_index, mask=None, bias=None, *, scale,
                     k_layout: str, v_layout: str):
    """Decode-time attention of T new tokens, at positions cache_index .. cache_index + T - 1, over
    the key/value cache as it was before them (positions < cache_index) and over themselves
    (causally). Equal to attending over the updated cache, but the matmuls read the cache they
    were given, not the update: XLA:CPU fuses an update into each of its readers and then copies
    the old cache for every one of them, on every step.

    q, k_new, v_new: [B, T, N or K, H]. cached_k, cached_v: in the axis orders k_layout / v_layout
    (einsum letters b, s (cache position), k (head), h), chosen so each matmul contracts the
    cache's minor axis. mask / bias: as for dot_product_attention, over the cache's positions."""
    B, T, N, H = q.shape
    L, K = cached_v.shape[v_layout.index("s")], cached_v.shape[v_layout.index("k")]
    q_BxTxKxGxH = q.reshape(B, T, K, N // K, H)
    logits = jnp.concatenate([
        jnp.einsum(f"btkgh,{k_layout}->bkgts", q_BxTxKxGxH, cached_k, preferred_element_type=jnp.float32),
        jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k_new, preferred_element_type=jnp.float32)], axis=-1)
    logits = logits.reshape(B, N, T, L + T) * jnp.float32(scale)
    visible = jnp.concatenate([jnp.broadcast_to(jnp.arange(L) < cache_index, (1, 1, T, L)),
                               causal_mask(T, T)], axis=-1)

    def at_new_positions(x):  # [.., L] over the cache -> [.., L + T]: what the new keys' slots hold
        x = jnp.broadcast_to(x, x.shape[:3] + (L,))
        return jnp.concatenate([x, jax.lax.dynamic_slice_in_dim(x, cache_index, T, axis=3)], axis=-1)
    if bias is not None:
        logits = logits + at_new_positions(bias.astype(jnp.float32))
    if mask is not None:
        visible = visible & at_new_positions(mask)
    logits = jnp.where(visible, logits, jnp.finfo(jnp.float32).min)
    probs = jnp.where(visible, jax.nn.softmax(logits, axis=-1), 0.0).reshape(B, K, N // K, T, L + T)
    out = (jnp.einsum(f"bkgts,{v_layout}->btkgh", probs[..., :L].astype(cached_v.dtype), cached_v)
           + jnp.einsum("bkgts,bskh->btkgh", probs[..., L:].astype(v_new.dtype), v_new))
    return out.reshape(B, T, N, H)
