"""Causal Transformer text decoder with cross-attention to the fused memory.

Training: logits for every position in one call (teacher forcing). Decoding (decode=True,
'cache' collection mutable): each call appends its tokens to the key/value cache and returns
their logits. The first decode call (prefill) may pass `memory`; its cross-attention keys/values
and mask are cached, so later calls pass only the new tokens. The cache holds `max_len`
positions; logits of tokens beyond it come back as NaN (inside jit there is no exception to
raise, and a clamped cache write would otherwise give plausible but wrong numbers).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.models.config import TextDecoderConfig
from sora_jax.models.text_embedding import TextEmbedding
from sora_jax.nn.linear import dense
from sora_jax.nn.masks import key_padding_mask
from sora_jax.nn.stack import LayerStack
from sora_jax.nn.transformer_block import TransformerBlock


class TextDecoder(nn.Module):
    cfg: TextDecoderConfig
    dtype: str = "float32"
    param_dtype: str = "float32"
    shared_token_embed: Any = None  # an Embed owned by SoraModel (model.share_text_embeddings)

    @nn.compact
    def __call__(self, tokens_BxT, memory_BxSxD=None, memory_valid_BxS=None, *, mask=None, positions_BxT=None,
                 deterministic=True, decode=False):
        """mask: optional extra 4-D self-attention mask (e.g. packed segments); causality is built in.
        In decode mode it is over the cache: [B, 1, T or 1, max_len]. positions_BxT: position of
        each token in its document (packed rows restart at 0); default 0..T-1."""
        cfg = self.cfg
        B, T = tokens_BxT.shape
        if memory_BxSxD is not None and not cfg.cross_attention:
            raise ValueError("memory was given but decoder.cross_attention is False")
        if self.is_initializing() and cfg.cross_attention and memory_BxSxD is None:
            raise ValueError("decoder.cross_attention is True: initialise the decoder with a memory "
                             "(or set cross_attention=False for a decoder-only language model)")
        memory_mask = None
        if memory_BxSxD is not None:
            valid = jnp.ones(memory_BxSxD.shape[:2], bool) if memory_valid_BxS is None else memory_valid_BxS
            memory_mask = key_padding_mask(valid)
        cache_index = None
        if decode:
            index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
            cache_index = index.value
            index.value = cache_index + T
            if memory_mask is not None:
                self.variable("cache", "memory_mask", lambda: memory_mask).value = memory_mask
            elif self.has_variable("cache", "memory_mask"):
                memory_mask = self.get_variable("cache", "memory_mask")
            positions_BxT = jnp.broadcast_to(cache_index + jnp.arange(T)[None], (B, T))
        else:
            if T > cfg.max_len and cfg.position == "learned":
                raise ValueError(f"decoder input length {T} exceeds decoder.max_len {cfg.max_len}")
            if positions_BxT is None:
                positions_BxT = jnp.broadcast_to(jnp.arange(T)[None], (B, T))

        embedding = TextEmbedding(cfg, self.dtype, self.param_dtype, self.shared_token_embed, name="embedding")
        x = embedding(tokens_BxT, positions_BxT, deterministic=deterministic)
        if not self.is_initializing():  # grads w.r.t. inputs when 'perturbations' is passed
            x = self.perturb("embeddings", x)
        layer_cfg = cfg.text_layer_config(self.dtype, self.param_dtype)
        x = LayerStack(TransformerBlock, layer_cfg, cfg.num_layers, cfg.scan_layers, cfg.remat_policy, cfg.scan_unroll,
                       causal=True, cross_attention=cfg.cross_attention, max_cache_len=cfg.max_len,
                       name="blocks")(x, mask, memory_BxSxD, memory_mask, positions_BxT, cache_index,
                                      deterministic=deterministic, decode=decode)
        if cfg.norm_position == "pre":
            x = layer_cfg.make_norm("final_norm")(x)
        if cfg.tie_embeddings:
            logits = embedding.attend(x)
        else:
            logits = dense(cfg.vocab_size, ("embed", "vocab"), use_bias=False, dtype=jnp.dtype(self.dtype),
                           param_dtype=jnp.dtype(self.param_dtype), name="lm_head")(x).astype(jnp.float32)
        if decode:  # past the end of the cache: poison the logits rather than return wrong ones
            overflow_BxTx1 = (positions_BxT >= cfg.max_len)[:, :, None]
            logits = jnp.where(overflow_BxTx1, jnp.nan, logits)
        return logits
