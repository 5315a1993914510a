"""Gated cross-attention layer (Flamingo, Alayrac et al. 2022): tokens attend to another
modality through tanh-gated residuals whose gates start at zero, so at initialisation the
layer is exactly the identity and the text path is undisturbed. Scan-shaped like TransformerBlock.
Always pre-norm; memory_mask is a key-padding mask [B, 1, 1, S]."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn.attention import MultiHeadAttention
from sora_jax.nn.linear import logical
from sora_jax.nn.transformer_block import StackableLayer


class GatedCrossBlock(StackableLayer):
    """Uses cfg, deterministic; the other StackableLayer fields only keep the LayerStack interface."""

    @nn.compact
    def __call__(self, x_BxTxD, mask=None, memory=None, memory_mask=None, positions=None, cache_index=None):
        cfg = self.cfg
        dropout = nn.Dropout(cfg.dropout_rate)
        zeros = logical(nn.initializers.zeros_init(), ())
        attn_gate = self.param("attention_gate", zeros, (), jnp.dtype(cfg.param_dtype))
        mlp_gate = self.param("mlp_gate", zeros, (), jnp.dtype(cfg.param_dtype))
        cross = MultiHeadAttention(kind="cross", name="cross_attention", **cfg.attention_kwargs())
        y = cross(cfg.make_norm("cross_attention_norm")(x_BxTxD), memory, memory_mask,
                  deterministic=self.deterministic)
        x = x_BxTxD + jnp.tanh(attn_gate).astype(y.dtype) * dropout(y, deterministic=self.deterministic)
        y = cfg.make_mlp("mlp")(cfg.make_norm("mlp_norm")(x), deterministic=self.deterministic)
        # An example with nothing to attend to (all memory masked) passes through unchanged.
        has_memory_Bx1x1 = jnp.any(memory_mask, axis=(1, 2, 3))[:, None, None].astype(y.dtype)
        y = has_memory_Bx1x1 * dropout(y, deterministic=self.deterministic)
        x = x + jnp.tanh(mlp_gate).astype(y.dtype) * y
        x = nn.with_logical_constraint(x, ("activation_batch", "activation_length", "activation_embed"))
        return x, None
