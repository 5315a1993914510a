"""Convolution and dense layers with optional spectral normalization (Miyato et al. 2018).

flax's nn.SpectralNorm cannot wrap parameters that carry logical-axis metadata, so the kernel
is divided by its largest singular value here, estimated by one step of power iteration per
call with the running vector `u` kept in the "spectral" collection (updated when
update_stats=True, as batch statistics are)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.nn.conv import CONV_AXES
from sora_jax.nn.linear import logical


def _normalize(v):
    return v / (jnp.linalg.norm(v) + 1e-12)


class SpectralLayer(nn.Module):
    """kind "conv": NHWC 'SAME' convolution (kernel, strides); kind "dense": x @ W over the last axis."""

    features: int
    kind: str = "conv"
    kernel: int = 3
    strides: int = 1
    spectral_norm: bool = False
    kernel_axes: tuple = CONV_AXES

    @nn.compact
    def __call__(self, x, *, update_stats=False):
        shape = ((self.kernel, self.kernel, x.shape[-1], self.features) if self.kind == "conv"
                 else (x.shape[-1], self.features))
        axes = self.kernel_axes if self.kind == "conv" else self.kernel_axes[-2:]
        init = nn.initializers.he_normal() if self.kind == "conv" else nn.initializers.lecun_normal()
        w = self.param("kernel", logical(init, axes), shape, jnp.float32)
        b = self.param("bias", logical(nn.initializers.zeros_init(), axes[-1:]), (self.features,), jnp.float32)
        if self.spectral_norm:
            w = w / self._sigma(w.reshape(-1, self.features), update_stats)
        if self.kind == "conv":
            y = jax.lax.conv_general_dilated(x, w, (self.strides, self.strides), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            y = x @ w
        return y + b.reshape((1,) * (y.ndim - 1) + (self.features,))

    def _sigma(self, w_IxO, update_stats):
        u = self.variable("spectral", "u", lambda: _normalize(
            jax.random.normal(jax.random.key(0), (w_IxO.shape[1],), jnp.float32)))
        w = jax.lax.stop_gradient(w_IxO)
        v = _normalize(w @ u.value)
        u_new = _normalize(w.T @ v)
        if update_stats and not self.is_initializing():
            u.value = u_new
        return v @ w_IxO @ u_new  # gradient flows through W, not through the power iteration
