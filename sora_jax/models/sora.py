"""The Sora model: text encoder + image encoder + fusion + text decoder (+ classifier head).

Use it through `init`/`apply` and the methods below, each a pure function of the parameters:

    model = SoraModel(SoraConfig.from_dict(config.model))
    params = model.init(key, text, text_valid, images, decoder_tokens)["params"]
    enc = model.apply({"params": params}, text, text_valid, images, method=SoraModel.encode)
    logits = model.apply({"params": params}, tokens, enc.memory, enc.memory_valid, method=SoraModel.decode)
    class_logits = model.apply({"params": params}, enc.pooled, method=SoraModel.classify)

Incremental decoding keeps a 'cache' collection:

    logits, vars = model.apply({"params": params}, prompt, enc.memory, enc.memory_valid,
                               method=SoraModel.decode_step, mutable=["cache"])      # prefill
    logits, vars = model.apply({"params": params, "cache": vars["cache"]}, next_token,
                               method=SoraModel.decode_step, mutable=["cache"])      # one step
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.models.config import SoraConfig
from sora_jax.models.fusion import Fusion
from sora_jax.models.image_encoder import ImageEncoder
from sora_jax.models.text_decoder import TextDecoder
from sora_jax.models.text_encoder import TextEncoder
from sora_jax.nn.linear import Embed, dense


class Encoded(NamedTuple):
    memory: jax.Array  # [B, S, D] fused tokens the decoder attends to
    memory_valid: jax.Array  # [B, S] bool
    pooled: jax.Array  # [B, D]


class SoraModel(nn.Module):
    cfg: SoraConfig

    def setup(self):
        c = self.cfg
        shared = None
        if c.share_text_embeddings:
            self.shared_text_embedding = Embed(c.decoder.vocab_size, c.decoder.d_model, dtype=jnp.dtype(c.dtype),
                                               param_dtype=jnp.dtype(c.param_dtype))
            shared = self.shared_text_embedding
        self.text_encoder = TextEncoder(c.text_encoder, c.dtype, c.param_dtype, shared)
        self.image_encoder = ImageEncoder(c.image_encoder, c.dtype, c.param_dtype)
        self.fusion = Fusion(c.fusion, c.dtype, c.param_dtype)
        self.decoder = TextDecoder(c.decoder, c.dtype, c.param_dtype, shared)
        if c.num_classes:
            self.classifier = dense(c.num_classes, ("embed", "classes"), dtype=jnp.dtype(c.dtype),
                                    param_dtype=jnp.dtype(c.param_dtype))

    def encode(self, text_BxT=None, text_valid_BxT=None, images_BxHxWxC=None, image_present_B=None, *,
               deterministic=True) -> Encoded:
        """Text and/or image -> fused memory, its validity, and the pooled vector.

        A modality left out (None) is absent for the whole batch. In a mixed batch, an example
        without text has an all-False text_valid row, and one without an image is marked False in
        image_present_B (its image tokens are then masked out everywhere)."""
        text = image = image_valid = None
        if text_BxT is not None:
            text, _ = self.text_encoder(text_BxT, text_valid_BxT, deterministic=deterministic)
        if images_BxHxWxC is not None:
            image, _ = self.image_encoder(images_BxHxWxC, deterministic=deterministic)
            if image_present_B is not None:
                image_valid = jnp.broadcast_to(image_present_B.astype(bool)[:, None], image.shape[:2])
        memory, valid, pooled = self.fusion(text, text_valid_BxT, image, image_valid, deterministic=deterministic)
        return Encoded(memory, valid, pooled)

    def encode_text(self, text_BxT, text_valid_BxT=None, *, deterministic=True):
        """The text encoder alone: (token states [B, T, D], pooled [B, D] by text_encoder.pooling);
        e.g. the text condition of the image generator."""
        return self.text_encoder(text_BxT, text_valid_BxT, deterministic=deterministic)

    def decode(self, tokens_BxT, memory_BxSxD=None, memory_valid_BxS=None, *, mask=None, positions_BxT=None,
               deterministic=True):
        """Teacher-forced decoder logits [B, T, vocab] (float32). No memory: a plain language model.
        mask / positions_BxT: for packed rows (segment mask and per-document positions)."""
        return self.decoder(tokens_BxT, memory_BxSxD, memory_valid_BxS, mask=mask, positions_BxT=positions_BxT,
                            deterministic=deterministic)

    def decode_step(self, tokens_BxT, memory_BxSxD=None, memory_valid_BxS=None):
        """Appends tokens to the decode cache (mutable 'cache') and returns their logits."""
        return self.decoder(tokens_BxT, memory_BxSxD, memory_valid_BxS, decode=True)

    def classify(self, pooled_BxD):
        if not self.cfg.num_classes:
            raise ValueError("model.num_classes is 0: this model has no classification head")
        return self.classifier(pooled_BxD).astype(jnp.float32)

    def __call__(self, text_BxT=None, text_valid_BxT=None, images_BxHxWxC=None, decoder_tokens_BxT=None,
                 *, deterministic=True):
        """Runs every part once (what `init` needs); returns a dict of the available outputs."""
        enc = self.encode(text_BxT, text_valid_BxT, images_BxHxWxC, deterministic=deterministic)
        out = {"encoded": enc}
        if decoder_tokens_BxT is not None:
            out["logits"] = self.decode(decoder_tokens_BxT, enc.memory, enc.memory_valid, deterministic=deterministic)
        if self.cfg.num_classes:
            out["class_logits"] = self.classify(enc.pooled)
        return out
