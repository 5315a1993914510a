"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus) sampling.
Pure functions of [B, V] logits, usable inside jit and lax loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def top_k_mask(logits_BxV, k: int):
    """Keeps the k largest logits of each row (ties at the k-th value are kept), others -inf."""
    if k <= 0 or k >= logits_BxV.shape[-1]:
        return logits_BxV
    kth = jax.lax.top_k(logits_BxV, k)[0][:, -1:]
    return jnp.where(logits_BxV >= kth, logits_BxV, -jnp.inf)


def top_p_mask(logits_BxV, p: float):
    """Keeps the smallest set of most probable tokens whose probabilities sum to at least p."""
    if p >= 1.0:
        return logits_BxV
    order = jnp.argsort(-logits_BxV, axis=-1)
    sorted_logits = jnp.take_along_axis(logits_BxV, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of the strictly more probable tokens
    keep_sorted = before < p  # the first token is always kept
    keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits_BxV.shape[0])[:, None], order].set(keep_sorted)
    return jnp.where(keep, logits_BxV, -jnp.inf)


def choose(logits_BxV, rng, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0):
    """temperature 0: greedy (argmax); otherwise a draw from softmax(logits / temperature) after
    the top-k and top-p filters."""
    if temperature <= 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = top_p_mask(top_k_mask(logits_BxV.astype(jnp.float32) / temperature, top_k), top_p)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
