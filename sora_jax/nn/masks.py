"""Boolean attention masks, always 4-D and broadcastable to [batch, heads, queries, keys].

True means "may attend". Masks combine with `&` (see `combine_masks`)."""

from __future__ import annotations

import jax.numpy as jnp


def padding_mask(valid_q_BxT, valid_k_BxS=None):
    """[B, 1, T, S] mask from per-position validity; queries at padding see nothing."""
    if valid_k_BxS is None:
        valid_k_BxS = valid_q_BxT
    return valid_q_BxT[:, None, :, None].astype(bool) & valid_k_BxS[:, None, None, :].astype(bool)


def key_padding_mask(valid_k_BxS):
    """[B, 1, 1, S] mask hiding padded keys only (linear memory, what chunked attention likes)."""
    return valid_k_BxS[:, None, None, :].astype(bool)


def causal_mask(num_queries: int, num_keys: int | None = None, offset=0):
    """[1, 1, T, S] lower-triangular mask: query t sees keys s <= t + offset."""
    num_keys = num_queries if num_keys is None else num_keys
    q_pos = jnp.arange(num_queries)[:, None] + offset
    k_pos = jnp.arange(num_keys)[None, :]
    return (k_pos <= q_pos)[None, None]


def segment_mask(segment_ids_q_BxT, segment_ids_k_BxS=None):
    """[B, 1, T, S] mask keeping packed documents apart (segment id 0 is padding)."""
    if segment_ids_k_BxS is None:
        segment_ids_k_BxS = segment_ids_q_BxT
    same = segment_ids_q_BxT[:, None, :, None] == segment_ids_k_BxS[:, None, None, :]
    return same & (segment_ids_k_BxS[:, None, None, :] > 0)


def combine_masks(*masks):
    """Logical AND of the masks that are not None (None if all are None)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0].astype(bool)
    for m in present[1:]:
        out = out & m.astype(bool)
    return out
