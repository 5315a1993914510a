"""ResNet-style CNN image encoder: NHWC images -> a grid of feature tokens at model width,
with 2-D positions, and a pooled vector."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.models.config import ImageEncoderConfig
from sora_jax.nn.conv import ACTIVATIONS, BottleneckBlock, ResNetBlock, conv, group_norm
from sora_jax.nn.linear import dense
from sora_jax.nn.norms import make_norm
from sora_jax.nn.positions import Learned2DPositions, sincos_2d


class ImageEncoder(nn.Module):
    """images [B, H, W, C] in [-1, 1] -> (tokens [B, h*w, D], pooled [B, D])."""

    cfg: ImageEncoderConfig
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, images_BxHxWxC, *, deterministic=True):
        cfg = self.cfg
        kw = dict(dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))
        B, H, W, C = images_BxHxWxC.shape
        if (H, W, C) != (cfg.image_size, cfg.image_size, cfg.in_channels):
            raise ValueError(f"images must be [batch, {cfg.image_size}, {cfg.image_size}, {cfg.in_channels}] "
                             f"(model.image_encoder.image_size / in_channels); got {images_BxHxWxC.shape}")
        act = ACTIVATIONS[cfg.activation]
        x = conv(cfg.stem_features, cfg.stem_kernel, cfg.stem_stride, use_bias=False, name="stem_conv", **kw)(
            images_BxHxWxC.astype(kw["dtype"]))
        x = act(group_norm(cfg.groups, name="stem_norm", **kw)(x))
        block_cls = BottleneckBlock if cfg.block == "bottleneck" else ResNetBlock
        for s, (features, num_blocks) in enumerate(zip(cfg.stage_features, cfg.blocks_per_stage)):
            for b in range(num_blocks):
                strides = 2 if (b == 0 and s > 0) else 1
                x = block_cls(features, strides, cfg.groups, cfg.activation, name=f"stage{s}_block{b}", **kw)(x)
        _, h, w, channels = x.shape
        tokens = dense(cfg.d_model, ("conv_out", "embed"), name="project", **kw)(x.reshape(B, h * w, channels))
        if cfg.position == "sincos":
            positions = sincos_2d(h, w, cfg.d_model)
        else:
            positions = Learned2DPositions(h, w, cfg.d_model, kw["param_dtype"], name="positions")()
        tokens = tokens + positions[None].astype(tokens.dtype)
        tokens = make_norm("layernorm", name="norm", **kw)(tokens)
        return tokens, jnp.mean(tokens, axis=1)
