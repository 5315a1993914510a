"""Multi-head attention layer: q/k/v/o projections around `dot_product_attention`.

Self-attention (kind="self") may use RoPE and, in decode mode, a key/value cache of
`max_cache_len` positions that each call appends to at `cache_index`. Cross-attention
(kind="cross") takes keys/values from `memory`; in decode mode they are computed once, when
`memory` is passed (prefill), stored in the cache, and reused by later calls (memory=None).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.nn.attention_core import cached_attention, dot_product_attention
from sora_jax.nn.linear import dense, matmul_trailing
from sora_jax.nn.low_precision_matmul import is_low_precision
from sora_jax.nn.positions import apply_rope


class MultiHeadAttention(nn.Module):
    num_heads: int
    head_dim: int
    num_kv_heads: int | None = None  # None: same as num_heads; fewer: grouped-query attention
    kind: str = "self"
    implementation: str = "explicit"
    chunk_size: int = 512
    dropout_rate: float = 0.0  # on the attention probabilities (explicit implementation only)
    use_bias: bool = True
    use_rope: bool = False
    rope_max_wavelength: float = 10_000.0
    max_cache_len: int = 0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    KEY_CACHE, VALUE_CACHE = "bksh", "bkhs"  # decode cache layouts (einsum letters), see _decode_attention

    @nn.compact
    def __call__(self, x_BxTxD, memory_BxSxE=None, mask=None, bias=None, *, is_causal=False,
                 positions_BxT=None, deterministic=True, decode=False, cache_index=None):
        if self.kind not in ("self", "cross"):
            raise ValueError(f"attention kind must be 'self' or 'cross', got {self.kind!r}")
        B, T, D = x_BxTxD.shape
        kv_heads = self.num_kv_heads or self.num_heads
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        project_q = dense((self.num_heads, self.head_dim), ("embed", "heads", "head_dim"), name="query", **kw)
        project_k = dense((kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"), name="key", **kw)
        project_v = dense((kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"), name="value", **kw)

        if self.kind == "self":
            if kv_heads == self.num_heads:
                q, k, v = self._fused_projections(x_BxTxD, (project_q, project_k, project_v), decode)
            else:
                q, k, v = project_q(x_BxTxD), project_k(x_BxTxD), project_v(x_BxTxD)
            if self.use_rope:
                if positions_BxT is None:
                    start = cache_index if decode else 0
                    positions_BxT = jnp.broadcast_to(start + jnp.arange(T)[None], (B, T))
                q = apply_rope(q, positions_BxT, self.rope_max_wavelength)
                k = apply_rope(k, positions_BxT, self.rope_max_wavelength)
            if decode:
                return self._project_out(self._decode_attention(q, k, v, mask, bias, cache_index), D, kw)
        else:
            q = project_q(x_BxTxD)
            k, v = self._cross_keys_values(memory_BxSxE, project_k, project_v, decode)

        dropout_rng = None
        if self.dropout_rate > 0.0 and not deterministic:
            dropout_rng = self.make_rng("dropout")
        out = dot_product_attention(
            q, k, v, mask, bias, is_causal=is_causal, implementation=self.implementation,
            chunk_size=self.chunk_size, dropout_rate=self.dropout_rate, dropout_rng=dropout_rng,
            deterministic=deterministic)
        return self._project_out(out, D, kw)

    def _fused_projections(self, x_BxTxD, projections, decode=False):
        """q, k and v as one matmul against their kernels stacked on a new axis: one [E, 3NH] product
        runs faster than three [E, NH] ones on CPU, and the parameters (names, shapes, shardings)
        stay those of three separate projections. Stacked after the heads axis, [E, N, 3, H], so
        that heads stay the major part of the flattened [E, N3H] matmul: split over tensor, each
        device's q, k and v heads are one contiguous block and tensor parallelism moves nothing.
        (Stacked before it, [E, 3, N, H], the partitioner gathered the whole kernel in the forward
        and the whole [B, T, 3, N, H] gradient in the backward, on every layer.)"""
        weights = [p(x_BxTxD, weights_only=True) for p in projections]
        kernel_ExNx3xH = jnp.stack([w for w, _ in weights], axis=2)
        bias_Nx3xH = jnp.stack([b for _, b in weights], axis=1) if self.use_bias else None
        # On CPU the training attention runs in float32 (see fused_attention): hand it float32
        # q/k/v rather than rounding them to bfloat16 and back (in both passes). Not when
        # decoding: the key/value cache keeps the compute dtype.
        cpu_low_precision = jax.default_backend() == "cpu" and is_low_precision(self.dtype)
        wide = jnp.float32 if cpu_low_precision and not decode else None
        qkv_BxTxNx3xH = matmul_trailing(x_BxTxD.astype(self.dtype), kernel_ExNx3xH, 1, bias=bias_Nx3xH,
                                        preferred_element_type=wide)
        return qkv_BxTxNx3xH[:, :, :, 0], qkv_BxTxNx3xH[:, :, :, 1], qkv_BxTxNx3xH[:, :, :, 2]

    def _project_out(self, out, D, kw):
        return dense(D, ("heads", "head_dim", "embed"), axis=(-2, -1), name="out", **kw)(out)

    def _decode_attention(self, q, k, v, mask, bias, cache_index):
        """Attends over the cache and the new keys/values, then writes them at cache_index."""
        if self.max_cache_len <= 0:
            raise ValueError("decode=True needs max_cache_len > 0 on the self-attention layer")
        if cache_index is None:
            raise ValueError("decode=True needs cache_index (the position of the first new token)")
        B, T, K, H = k.shape
        # Stored so that each attention matmul contracts the cache's minor axis, which XLA:CPU's
        # dot reads in place: keys [B, K, L, H] (q . k contracts H), values [B, K, H, L]
        # (probs . v contracts L). Other layouts copy or transpose the whole cache every step.
        L = self.max_cache_len
        cached_k = self.variable("cache", "cached_key", jnp.zeros, (B, K, L, H), k.dtype)
        cached_v = self.variable("cache", "cached_value", jnp.zeros, (B, K, H, L), v.dtype)
        out = cached_attention(q, k, v, cached_k.value, cached_v.value, cache_index, mask, bias,
                               scale=self.head_dim ** -0.5, k_layout=self.KEY_CACHE, v_layout=self.VALUE_CACHE)
        k, v = _after(k, out), _after(v, out)
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k.transpose(0, 2, 1, 3), (0, 0, cache_index, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v.transpose(0, 2, 3, 1), (0, 0, 0, cache_index))
        return out

    def _cross_keys_values(self, memory, project_k, project_v, decode):
        if memory is not None:
            k, v = project_k(memory), project_v(memory)
            if decode:  # prefill: remember them for the following steps
                self.variable("cache", "cross_key", lambda: k).value = k
                self.variable("cache", "cross_value", lambda: v).value = v
            return k, v
        if not (decode and self.has_variable("cache", "cross_key")):
            raise ValueError("cross-attention needs memory, or a decode cache filled by a prefill call with memory")
        return self.get_variable("cache", "cross_key"), self.get_variable("cache", "cross_value")


def _after(new_BxTxKxH, out_BxTxNxH):
    """new, unchanged in value, computed from `out` too, so that writing it to the cache comes after
    the attention's reads of the old cache. Without that order XLA:CPU copies every layer's cache on
    every decode step before updating it in place (a fifth of the step). Elementwise at matching
    (batch, position, key/value head): no communication when these are sharded. min(x, x + 0 or 1)
    is x for every x (NaN and infinities included, up to the sign of a zero); XLA does not fold it."""
    B, T, K, H = new_BxTxKxH.shape
    group_first = out_BxTxNxH.reshape(B, T, K, -1, H)[:, :, :, 0]
    return jnp.minimum(new_BxTxKxH, new_BxTxKxH + jnp.isnan(group_first).astype(new_BxTxKxH.dtype))

