"""Bidirectional Transformer text encoder: embeddings + positions + N blocks + final norm."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.models.config import TextEncoderConfig
from sora_jax.models.pooling import masked_mean
from sora_jax.models.text_embedding import TextEmbedding
from sora_jax.nn.masks import key_padding_mask
from sora_jax.nn.stack import LayerStack
from sora_jax.nn.transformer_block import TransformerBlock


class TextEncoder(nn.Module):
    """tokens [B, T] (+ validity mask [B, T]) -> (token states [B, T, D], pooled [B, D])."""

    cfg: TextEncoderConfig
    dtype: str = "float32"
    param_dtype: str = "float32"
    shared_token_embed: Any = None  # an Embed owned by SoraModel (model.share_text_embeddings)

    @nn.compact
    def __call__(self, tokens_BxT, valid_BxT=None, token_types_BxT=None, *, deterministic=True):
        cfg = self.cfg
        B, T = tokens_BxT.shape
        if T > cfg.max_len and cfg.position == "learned":
            raise ValueError(f"text length {T} exceeds text_encoder.max_len {cfg.max_len}")
        valid_BxT = jnp.ones((B, T), bool) if valid_BxT is None else valid_BxT.astype(bool)
        positions_BxT = jnp.broadcast_to(jnp.arange(T)[None], (B, T))
        x = TextEmbedding(cfg, self.dtype, self.param_dtype, self.shared_token_embed, name="embedding")(
            tokens_BxT, positions_BxT, token_types_BxT, deterministic=deterministic)
        if not self.is_initializing():  # grads w.r.t. inputs when 'perturbations' is passed
            x = self.perturb("embeddings", x)
        layer_cfg = cfg.text_layer_config(self.dtype, self.param_dtype)
        x = LayerStack(TransformerBlock, layer_cfg, cfg.num_layers, cfg.scan_layers, cfg.remat_policy, cfg.scan_unroll,
                       name="blocks")(x, key_padding_mask(valid_BxT), positions=positions_BxT,
                                      deterministic=deterministic)
        if cfg.norm_position == "pre":
            x = layer_cfg.make_norm("final_norm")(x)
        pooled = x[:, 0] if cfg.pooling == "cls" else masked_mean(x, valid_BxT)
        return x, pooled
