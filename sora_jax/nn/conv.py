"""Convolution blocks over NHWC images: ResNet basic and bottleneck blocks with GroupNorm,
downsampling and upsampling. Kernels are named ("conv_height", "conv_width", "conv_in", "conv_out")."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.nn.linear import logical

CONV_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")
ACTIVATIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "gelu": jax.nn.gelu,
               "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2)}


def conv(features, kernel=3, strides=1, *, use_bias=True, dtype=jnp.float32, param_dtype=jnp.float32,
         kernel_init=nn.initializers.he_normal(), name=None):
    return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding="SAME",
                   use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                   kernel_init=logical(kernel_init, CONV_AXES),
                   bias_init=logical(nn.initializers.zeros_init(), ("conv_out",)), name=name)


def group_norm(groups, *, dtype=jnp.float32, param_dtype=jnp.float32, zero_scale=False, name=None):
    scale_init = nn.initializers.zeros_init() if zero_scale else nn.initializers.ones_init()
    return nn.GroupNorm(num_groups=groups, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype,
                        scale_init=logical(scale_init, ("conv_out",)),
                        bias_init=logical(nn.initializers.zeros_init(), ("conv_out",)), name=name)


class _ConvBlockBase(nn.Module):
    features: int
    strides: int = 1
    groups: int = 8
    activation: str = "relu"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _conv(self, features, kernel, strides=1, name=None):
        # No bias: a GroupNorm follows every convolution.
        return conv(features, kernel, strides, use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, name=name)

    def _norm(self, name, zero_scale=False):
        return group_norm(self.groups, dtype=self.dtype, param_dtype=self.param_dtype,
                          zero_scale=zero_scale, name=name)

    def _shortcut(self, x, out_features):
        if x.shape[-1] == out_features and self.strides == 1:
            return x
        return self._norm("shortcut_norm")(self._conv(out_features, 1, self.strides, name="shortcut_conv")(x))


class ResNetBlock(_ConvBlockBase):
    """Basic block: 3x3 conv (stride) -> GN -> act -> 3x3 conv -> GN, plus shortcut, then act.
    The last GroupNorm's scale starts at zero so each block starts as (nearly) the identity."""

    @nn.compact
    def __call__(self, x_BxHxWxC):
        act = ACTIVATIONS[self.activation]
        y = act(self._norm("norm1")(self._conv(self.features, 3, self.strides, name="conv1")(x_BxHxWxC)))
        y = self._norm("norm2", zero_scale=True)(self._conv(self.features, 3, name="conv2")(y))
        return act(y + self._shortcut(x_BxHxWxC, self.features))


class BottleneckBlock(_ConvBlockBase):
    """Bottleneck block (ResNet-50 v1.5): 1x1 -> 3x3 (stride) -> 1x1 to features * expansion."""

    expansion: int = 4

    @nn.compact
    def __call__(self, x_BxHxWxC):
        act = ACTIVATIONS[self.activation]
        out_features = self.features * self.expansion
        y = act(self._norm("norm1")(self._conv(self.features, 1, name="conv1")(x_BxHxWxC)))
        y = act(self._norm("norm2")(self._conv(self.features, 3, self.strides, name="conv2")(y)))
        y = self._norm("norm3", zero_scale=True)(self._conv(out_features, 1, name="conv3")(y))
        return act(y + self._shortcut(x_BxHxWxC, out_features))


class Downsample(nn.Module):
    """Halves height and width with a strided 3x3 convolution."""

    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC):
        return conv(self.features, 3, 2, dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x_BxHxWxC)


class Upsample(nn.Module):
    """Doubles height and width: nearest-neighbour resize, then a 3x3 convolution
    (avoids the checkerboard artefacts of transposed convolutions)."""

    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC):
        B, H, W, C = x_BxHxWxC.shape
        x = jax.image.resize(x_BxHxWxC, (B, 2 * H, 2 * W, C), method="nearest")
        return conv(self.features, 3, 1, dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
