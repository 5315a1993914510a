"""The explicit attention's fast path: the same numbers as `explicit_attention`, with a
hand-written backward pass and, for causal self-attention, no work on the masked-out half.

Backward (flash-attention's algebra, Dao et al. 2022): with O = P V,
    dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)) * scale,  dQ = dS K,  dK = dS^T Q.
rowsum(dO * O) equals rowsum(dP * P) but reads [T, head_dim] instead of [T, S], and autodiff
of the reference adds passes over the [T, S] probabilities for its masks and its softmax.
Causal: the first half of the queries only sees the first half of the keys, so that quarter
of the logits is never computed (the 6-layer / 384-wide benchmark model at sequence 256:
attention forward + backward ~90 -> ~58 ms per layer on the 2-core CPU).
The scale multiplies q before the matmuls (q' = q * scale; dS as above without the scale, and
dK = dS^T q' carries it): XLA:CPU pulls a scalar multiply of [T, S] tensors into its YNNPACK
matmul fusions as a materialised full-size broadcast, read by every layer's backward (the
benchmark model's step ~2-3% faster without).

Layout: q [B, T, N, H], k and v [B, S, K, H] as in attention_core; the matmuls run head-major.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sora_jax.nn.low_precision_matmul import is_low_precision
from sora_jax.nn.masks import causal_mask, combine_masks

CAUSAL_SPLIT_MIN_LENGTH = 128  # shorter sequences: the split's extra ops cost more than they save


def _probs(q, k, mask):
    """Softmax probabilities [B, N, T, S] in float32 (q already scaled); rows with no visible
    key are all zero."""
    logits = jnp.einsum("bnth,bnsh->bnts", q, k, preferred_element_type=jnp.float32)
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jnp.where(mask, jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)), 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)


@jax.custom_vjp
def _attend(q, k, v, mask):
    return _attend_fwd(q, k, v, mask)[0]


def _attend_fwd(q, k, v, mask):
    probs = _probs(q, k, mask)
    out = jnp.einsum("bnts,bnsh->bnth", probs.astype(v.dtype), v)
    return out, (q, k, v, mask, probs, out)


def _attend_bwd(residuals, d_out):
    q, k, v, mask, probs, out = residuals
    d_v = jnp.einsum("bnts,bnth->bnsh", probs.astype(d_out.dtype), d_out)
    d_probs = jnp.einsum("bnth,bnsh->bnts", d_out, v, preferred_element_type=jnp.float32)
    row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_logits = probs * (d_probs - row)
    d_q = jnp.einsum("bnts,bnsh->bnth", d_logits.astype(k.dtype), k)
    d_k = jnp.einsum("bnts,bnth->bnsh", d_logits.astype(q.dtype), q)
    return d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype), None


_attend.defvjp(_attend_fwd, _attend_bwd)


def _rows(mask, start, stop, keys):
    """mask[..., start:stop, :keys], leaving broadcast (size-1) axes alone."""
    if mask.shape[-2] > 1:
        mask = mask[..., start:stop, :]
    return mask[..., :keys] if mask.shape[-1] > 1 else mask


def fused_attention(q, k, v, mask=None, *, scale, is_causal=False):
    """softmax(q k^T * scale, masked) v without bias or dropout; see the module docstring."""
    if jax.default_backend() == "cpu" and is_low_precision(q.dtype):
        # XLA:CPU's batched bfloat16 dots run slower than float32 ones, and its fusions that
        # assemble bfloat16 gradients here are slower still: compute in float32, round once.
        f32 = (x.astype(jnp.float32) for x in (q, k, v))
        return fused_attention(*f32, mask, scale=scale, is_causal=is_causal).astype(q.dtype)
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    if K != N:  # grouped-query attention: query head n reads key/value head n // (N // K)
        k, v = jnp.repeat(k, N // K, axis=2), jnp.repeat(v, N // K, axis=2)
    q = q * jnp.asarray(scale, q.dtype)
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    if is_causal:
        mask = combine_masks(mask, causal_mask(T, S))
    if is_causal and T == S and T % 2 == 0 and T >= CAUSAL_SPLIT_MIN_LENGTH:
        half = T // 2
        out = jnp.concatenate([
            _attend(q[:, :, :half], k[:, :, :half], v[:, :, :half], _rows(mask, 0, half, half)),
            _attend(q[:, :, half:], k, v, _rows(mask, half, T, S))], axis=2)
    else:
        out = _attend(q, k, v, mask)
    return out.transpose(0, 2, 1, 3)
