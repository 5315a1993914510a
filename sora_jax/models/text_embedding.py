"""Token embedding + positional encoding (+ optional token types and norm), shared by the
text encoder and decoder; `attend` turns states back into vocabulary logits (tied weights).
`shared_token_embed`: an Embed owned by the parent model (model.share_text_embeddings), used in
place of this layer's own token table."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn.linear import Embed
from sora_jax.nn.norms import make_norm
from sora_jax.nn.positions import LearnedPositions, sinusoidal


class TextEmbedding(nn.Module):
    cfg: object  # TextEncoderConfig or TextDecoderConfig
    dtype: str = "float32"
    param_dtype: str = "float32"
    shared_token_embed: Any = None

    def setup(self):
        cfg = self.cfg
        kw = dict(dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))
        if self.shared_token_embed is None:
            self.token_embed = Embed(cfg.vocab_size, cfg.d_model, **kw)
        if cfg.position == "learned":
            self.position_embed = LearnedPositions(cfg.max_len, cfg.d_model, param_dtype=kw["param_dtype"])
        if getattr(cfg, "type_vocab_size", 0):
            self.type_embed = Embed(cfg.type_vocab_size, cfg.d_model, axes=("token_type", "embed"), **kw)
        if getattr(cfg, "embed_norm", False):
            self.norm = make_norm(cfg.norm, eps=cfg.norm_eps, **kw)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def _table(self):
        return self.token_embed if self.shared_token_embed is None else self.shared_token_embed

    def __call__(self, tokens_BxT, positions_BxT, token_types_BxT=None, *, deterministic=True):
        x = self._table()(tokens_BxT)
        if self.cfg.position == "learned":
            x = x + self.position_embed(positions_BxT).astype(x.dtype)
        elif self.cfg.position == "sinusoidal":
            x = x + sinusoidal(positions_BxT, self.cfg.d_model).astype(x.dtype)
        if getattr(self.cfg, "type_vocab_size", 0):
            types = jnp.zeros_like(tokens_BxT) if token_types_BxT is None else token_types_BxT
            x = x + self.type_embed(types)
        if getattr(self.cfg, "embed_norm", False):
            x = self.norm(x)
        return self.dropout(x, deterministic=deterministic)

    def attend(self, x_BxTxD):
        return self._table().attend(x_BxTxD)
