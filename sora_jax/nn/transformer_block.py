"""One Transformer layer (self-attention, optional cross-attention, feed-forward), pre- or post-norm.

The layer's hyper-parameters live in a frozen, hashable `LayerConfig` so that layers can be
stacked by `nn.scan` (see stack.py); the call signature is scan-shaped: (x, *broadcast) -> (x, None).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn import grad_barrier
from sora_jax.nn.attention import MultiHeadAttention
from sora_jax.nn.mlp import MLP
from sora_jax.nn.norms import make_norm


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    num_heads: int
    head_dim: int
    mlp_dim: int
    num_kv_heads: int | None = None
    mlp_activation: str = "gelu"
    norm: str = "layernorm"
    norm_position: str = "pre"  # "pre" (GPT-2, LLaMA) or "post" (original Transformer, BERT)
    norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str = "explicit"
    chunk_size: int = 512
    use_bias: bool = True
    use_rope: bool = False
    rope_max_wavelength: float = 10_000.0
    dtype: str = "float32"
    param_dtype: str = "float32"
    residual_grad_barrier: str = "auto"  # see grad_barrier.py; "auto": on for one CPU device

    def attention_kwargs(self):
        return dict(num_heads=self.num_heads, head_dim=self.head_dim, num_kv_heads=self.num_kv_heads,
                    implementation=self.attention_impl, chunk_size=self.chunk_size,
                    dropout_rate=self.attention_dropout_rate, use_bias=self.use_bias,
                    dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))

    def make_norm(self, name):
        return make_norm(self.norm, eps=self.norm_eps, dtype=jnp.dtype(self.dtype),
                         param_dtype=jnp.dtype(self.param_dtype), name=name)

    def make_mlp(self, name):
        return MLP(self.mlp_dim, self.mlp_activation, dropout_rate=self.dropout_rate,
                   use_bias=self.use_bias, dtype=jnp.dtype(self.dtype),
                   param_dtype=jnp.dtype(self.param_dtype), name=name)


def residual(cfg: LayerConfig, x, sublayer, norm, dropout):
    """Pre-norm: x + f(norm(x)). Post-norm: norm(x + f(x))."""
    if grad_barrier.enabled(cfg.residual_grad_barrier):
        x = grad_barrier.grad_barrier(x)
    if cfg.norm_position == "pre":
        return x + dropout(sublayer(norm(x)))
    if cfg.norm_position == "post":
        return norm(x + dropout(sublayer(x)))
    raise ValueError(f"norm_position must be 'pre' or 'post', got {cfg.norm_position!r}")


class StackableLayer(nn.Module):
    """What LayerStack passes to every layer it builds; subclasses implement the scan-shaped
    __call__(x, mask, memory, memory_mask, positions, cache_index) -> (x, None)."""

    cfg: LayerConfig
    causal: bool = False
    cross_attention: bool = False
    max_cache_len: int = 0
    deterministic: bool = True
    decode: bool = False


class TransformerBlock(StackableLayer):

    @nn.compact
    def __call__(self, x_BxTxD, mask=None, memory=None, memory_mask=None, positions=None, cache_index=None):
        cfg = self.cfg
        dropout = nn.Dropout(cfg.dropout_rate)

        def drop(y):
            return dropout(y, deterministic=self.deterministic)

        attn = MultiHeadAttention(kind="self", use_rope=cfg.use_rope, rope_max_wavelength=cfg.rope_max_wavelength,
                                  max_cache_len=self.max_cache_len, name="self_attention",
                                  **cfg.attention_kwargs())
        x = residual(cfg, x_BxTxD, lambda h: attn(
            h, mask=mask, is_causal=self.causal and not self.decode, positions_BxT=positions,
            deterministic=self.deterministic, decode=self.decode, cache_index=cache_index),
            cfg.make_norm("self_attention_norm"), drop)
        # memory_mask marks that memory exists (during decode steps it lives in the cache).
        if self.cross_attention and memory_mask is not None:
            cross = MultiHeadAttention(kind="cross", name="cross_attention", **cfg.attention_kwargs())
            x = residual(cfg, x, lambda h: cross(h, memory, memory_mask, deterministic=self.deterministic,
                                                 decode=self.decode),
                         cfg.make_norm("cross_attention_norm"), drop)
        mlp = cfg.make_mlp("mlp")
        x = residual(cfg, x, lambda h: mlp(h, deterministic=self.deterministic), cfg.make_norm("mlp_norm"), drop)
        x = nn.with_logical_constraint(x, ("activation_batch", "activation_length", "activation_embed"))
        return x, None
