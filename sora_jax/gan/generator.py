"""Text-conditioned generator: noise + text -> mapping MLP -> style w -> 4x4 start ->
upsampling blocks whose GroupNorms are modulated by w (FiLM / adaptive normalization) ->
image in [-1, 1]. In inpainting mode a convolutional encoder reads (masked image, mask) and its
features skip into the upsampling stack at every resolution (U-Net), and the output keeps the
known pixels exactly."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.gan.config import GANConfig
from sora_jax.gan.spectral import SpectralLayer
from sora_jax.nn.conv import conv
from sora_jax.nn.linear import dense


def lrelu(x):
    return jax.nn.leaky_relu(x, 0.2)


def pixel_norm(x, eps=1e-8):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def text_condition(cfg: GANConfig, pooled_BxC, tokens_BxTxC=None, valid_BxT=None):
    """The pooled text embedding, plus the mean of the valid token states when given, with the
    gradient stopped when the text encoder is frozen for the GAN."""
    cond = pooled_BxC
    if tokens_BxTxC is not None:
        valid = jnp.ones(tokens_BxTxC.shape[:2], bool) if valid_BxT is None else valid_BxT
        weights = valid.astype(tokens_BxTxC.dtype)[..., None]
        mean = jnp.sum(tokens_BxTxC * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        cond = jnp.concatenate([pooled_BxC, mean], axis=-1)
    return jax.lax.stop_gradient(cond) if cfg.text_conditioning == "frozen" else cond


class ModulatedNorm(nn.Module):
    """GroupNorm without its own affine, then x * (1 + scale(w)) + shift(w)."""

    groups: int = 8

    @nn.compact
    def __call__(self, x_BxHxWxC, w_BxW):
        C = x_BxHxWxC.shape[-1]
        x = nn.GroupNorm(num_groups=min(self.groups, C), use_scale=False, use_bias=False)(x_BxHxWxC)
        film = dense((2, C), ("embed", None, "conv_out"), kernel_init=nn.initializers.zeros_init(), name="film")(w_BxW)
        return x * (1.0 + film[:, 0, None, None, :]) + film[:, 1, None, None, :]


class UpBlock(nn.Module):
    features: int
    upsample: bool = True

    @nn.compact
    def __call__(self, x, w, skip=None):
        if self.upsample:
            B, H, W, C = x.shape
            x = jax.image.resize(x, (B, 2 * H, 2 * W, C), method="nearest")
        if skip is not None:
            x = jnp.concatenate([x, skip], axis=-1)
        x = lrelu(ModulatedNorm(name="norm1")(conv(self.features, 3, name="conv1")(x), w))
        return lrelu(ModulatedNorm(name="norm2")(conv(self.features, 3, name="conv2")(x), w))


class MaskedImageEncoder(nn.Module):
    """(masked image, known mask) -> features at image_size, image_size/2, ..., 4 (U-Net skips)."""

    cfg: GANConfig

    @nn.compact
    def __call__(self, masked_BxHxWxC, known_BxHxWx1):
        cfg = self.cfg
        x = jnp.concatenate([masked_BxHxWxC, known_BxHxWx1], axis=-1)
        skips = {}
        resolution = cfg.image_size
        x = lrelu(conv(cfg.channels_at(resolution), 3, name=f"conv_{resolution}")(x))
        while True:
            skips[resolution] = x
            if resolution == 4:
                return skips
            resolution //= 2
            x = lrelu(conv(cfg.channels_at(resolution), 3, 2, name=f"down_{resolution}")(x))


class Generator(nn.Module):
    cfg: GANConfig

    @nn.compact
    def __call__(self, z_BxZ, cond_BxC, masked_image=None, known=None):
        cfg = self.cfg
        if cfg.inpaint and (masked_image is None or known is None):
            raise ValueError("model.gan.inpaint: the generator needs the masked image and its known-pixel mask")
        # Noise and text enter at the same scale (pixel norm, as StyleGAN normalises z), so that
        # a wide text embedding cannot drown the noise and collapse each prompt to one image.
        text = dense(cfg.w_dim, (None, "embed"), name="text_embed")(cond_BxC)
        w = jnp.concatenate([pixel_norm(z_BxZ), pixel_norm(text)], axis=-1)
        for i in range(cfg.mapping_layers):
            w = lrelu(dense(cfg.w_dim, (None, "embed"), name=f"mapping_{i}")(w))
        skips = MaskedImageEncoder(cfg, name="encoder")(masked_image, known) if cfg.inpaint else {}
        B, c4 = z_BxZ.shape[0], cfg.channels_at(4)
        x = dense((4, 4, c4), ("embed", None, None, "conv_out"), name="start")(w)
        x = UpBlock(c4, upsample=False, name="block_4")(x, w, skips.get(4))
        resolution = 4
        while resolution < cfg.image_size:
            resolution *= 2
            x = UpBlock(cfg.channels_at(resolution), name=f"block_{resolution}")(x, w, skips.get(resolution))
        # Three output channels: not sharded (no mesh axis divides 3).
        to_rgb = SpectralLayer(cfg.channels, "conv", 1, kernel_axes=("conv_height", "conv_width", "conv_in", None),
                               name="to_rgb")
        image = jnp.tanh(to_rgb(x))
        if cfg.inpaint:  # the known pixels are kept exactly
            image = known * masked_image + (1.0 - known) * image
        assert image.shape == (B, cfg.image_size, cfg.image_size, cfg.channels)
        return image
