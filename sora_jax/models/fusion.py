"""Fusion of text and image tokens into one memory for the decoder and one pooled vector.

mode="joint": both token sequences (projected to the fusion width, tagged with a learned
  modality embedding) are concatenated and mixed by self-attention blocks that respect padding.
mode="cross": text tokens attend to image tokens through gated cross-attention blocks whose
  gates start at zero (Flamingo); the memory is [fused text tokens; image tokens].
Either modality may be absent (None). In cross mode with no image the text passes unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.models.config import FusionConfig
from sora_jax.models.pooling import masked_mean
from sora_jax.nn.gated_cross_block import GatedCrossBlock
from sora_jax.nn.linear import dense, logical
from sora_jax.nn.masks import key_padding_mask
from sora_jax.nn.stack import LayerStack
from sora_jax.nn.transformer_block import TransformerBlock

TEXT, IMAGE = 0, 1


class Fusion(nn.Module):
    cfg: FusionConfig
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, text_BxTxD=None, text_valid_BxT=None, image_BxPxD=None, image_valid_BxP=None,
                 *, deterministic=True):
        """Returns (memory [B, S, D], memory_valid [B, S], pooled [B, D])."""
        cfg = self.cfg
        if text_BxTxD is None and image_BxPxD is None:
            raise ValueError("fusion needs text tokens, image tokens, or both")
        kw = dict(dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))
        layer_cfg = cfg.layer_config(self.dtype, self.param_dtype)
        text, text_valid = self._prepare(text_BxTxD, text_valid_BxT, "text_project", kw)
        image, image_valid = self._prepare(image_BxPxD, image_valid_BxP, "image_project", kw)

        if cfg.mode == "joint":
            types = self.param("modality_embedding", logical(nn.initializers.normal(0.02), ("modality", "embed")),
                               (2, cfg.d_model), kw["param_dtype"])
            parts = []
            if text is not None:
                parts.append((text + types[TEXT][None, None].astype(text.dtype), text_valid))
            if image is not None:
                parts.append((image + types[IMAGE][None, None].astype(image.dtype), image_valid))
            x = jnp.concatenate([p[0] for p in parts], axis=1)
            valid = jnp.concatenate([p[1] for p in parts], axis=1)
            x = LayerStack(TransformerBlock, layer_cfg, cfg.num_layers, cfg.scan_layers, cfg.remat_policy,
                           cfg.scan_unroll, name="blocks")(x, key_padding_mask(valid), deterministic=deterministic)
            if cfg.norm_position == "pre":
                x = layer_cfg.make_norm("final_norm")(x)
        elif text is None:
            x, valid = image, image_valid
        elif image is None:
            x, valid = text, text_valid
        else:
            fused = LayerStack(GatedCrossBlock, layer_cfg, cfg.num_layers, cfg.scan_layers, cfg.remat_policy,
                               cfg.scan_unroll, cross_attention=True, name="blocks")(
                text, memory=image, memory_mask=key_padding_mask(image_valid), deterministic=deterministic)
            x = jnp.concatenate([fused, image], axis=1)
            valid = jnp.concatenate([text_valid, image_valid], axis=1)
        return x, valid, masked_mean(x, valid)

    def _prepare(self, x, valid, project_name, kw):
        if x is None:
            return None, None
        valid = jnp.ones(x.shape[:2], bool) if valid is None else valid.astype(bool)
        if x.shape[-1] != self.cfg.d_model:
            x = dense(self.cfg.d_model, ("embed_in", "embed"), name=project_name, **kw)(x)
        return x.astype(kw["dtype"]), valid
