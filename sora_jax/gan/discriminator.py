"""Text-conditioned discriminator: downsampling convolutions (optionally spectrally normalized),
minibatch standard deviation at 4x4, and projection conditioning (Miyato & Koyama 2018):
logit = linear(h) + <embed(text), h>, so a real image with the wrong caption scores low."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.gan.config import GANConfig
from sora_jax.gan.generator import lrelu
from sora_jax.gan.spectral import SpectralLayer
from sora_jax.nn.linear import dense


def minibatch_std(x_BxHxWxC, group: int = 4):
    """Appends one channel: the mean over features of the standard deviation across a group of
    examples (Karras et al. 2018), which lets D see a collapse of variety."""
    B, H, W, C = x_BxHxWxC.shape
    g = min(group, B)
    while B % g:
        g -= 1
    y = x_BxHxWxC.reshape(g, B // g, H, W, C)
    std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [B/g, H, W, C]
    stat = jnp.mean(std, axis=(1, 2, 3))  # [B/g]
    stat = jnp.tile(stat, g)[:, None, None, None]  # example i belongs to group i % (B/g)
    return jnp.concatenate([x_BxHxWxC, jnp.broadcast_to(stat, (B, H, W, 1))], axis=-1)


class Discriminator(nn.Module):
    cfg: GANConfig

    def _conv(self, x, features, kernel, strides, name, update_stats):
        return SpectralLayer(features, "conv", kernel, strides, self.cfg.spectral_norm, name=name)(
            x, update_stats=update_stats)

    def _dense(self, x, features, axes, name, update_stats):
        return SpectralLayer(features, "dense", spectral_norm=self.cfg.spectral_norm, kernel_axes=axes, name=name)(
            x, update_stats=update_stats)

    @nn.compact
    def __call__(self, images_BxHxWxC, cond_BxC, known=None, *, update_stats=False, embeddings=False):
        """Per-example logits [B]. known: the inpainting mask, shown to D as an extra channel.
        embeddings (with cfg.contrastive_dim): also the unit-norm image and text embeddings
        [B, contrastive_dim] of the contrastive heads, as (logits, image_emb, text_emb)."""
        cfg = self.cfg
        x = images_BxHxWxC if known is None else jnp.concatenate([images_BxHxWxC, known], axis=-1)
        resolution = cfg.image_size
        x = lrelu(self._conv(x, cfg.channels_at(resolution), 1, 1, "from_rgb", update_stats))
        while resolution > 4:
            x = lrelu(self._conv(x, cfg.channels_at(resolution), 3, 1, f"conv_{resolution}", update_stats))
            resolution //= 2
            x = lrelu(self._conv(x, cfg.channels_at(resolution), 3, 2, f"down_{resolution}", update_stats))
        if cfg.minibatch_std:
            x = minibatch_std(x)
        x = lrelu(self._conv(x, cfg.channels_at(4), 3, 1, "conv_final", update_stats))
        h = x.reshape(x.shape[0], -1)
        h = lrelu(self._dense(h, cfg.channels_at(4), (None, "embed"), "features", update_stats))
        unconditional = self._dense(h, 1, ("embed", None), "out", update_stats)[:, 0]
        projected = dense(h.shape[-1], (None, "embed"), use_bias=False, name="text_projection")(cond_BxC)
        logits = unconditional + jnp.sum(projected * h, axis=-1)
        if not cfg.contrastive_dim:
            if embeddings:
                raise ValueError("model.gan.contrastive_dim: the discriminator has no contrastive heads")
            return logits
        # Created at init even when not asked for, so that the parameters exist.
        image_emb = unit(dense(cfg.contrastive_dim, ("embed", None), name="image_head")(h))
        text_emb = unit(dense(cfg.contrastive_dim, (None, None), name="text_head")(cond_BxC))
        return (logits, image_emb, text_emb) if embeddings else logits


def unit(x, eps=1e-6):
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)
