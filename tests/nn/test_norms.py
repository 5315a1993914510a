"""LayerNorm / RMSNorm with hand-written derivatives against autodiff of the plain formulas and
against flax's own norms (same parameter names, values and gradients)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.nn import make_norm
from sora_jax.nn.norm_ops import layer_norm, rms_norm

EPS = 1e-6


def _lead(p, x):
    return p.reshape((1,) * (x.ndim - 1) + p.shape)


def reference_layer_norm(x, scale, bias):
    x = x.astype(jnp.float32)
    scale, bias = _lead(scale, x), _lead(bias, x)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias


def reference_rms_norm(x, scale):
    x = x.astype(jnp.float32)
    scale = _lead(scale, x)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + EPS) * scale


@pytest.mark.parametrize("shape", [(7, 16), (2, 5, 16), (2, 3, 4, 24), (0, 8), (3, 1)])
def test_values_and_gradients_match_autodiff_of_the_formulas(shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(3.0, 2.0, shape), jnp.float32)
    scale = jnp.asarray(rng.normal(1.0, 0.3, shape[-1:]), jnp.float32)
    bias = jnp.asarray(rng.normal(0.0, 0.3, shape[-1:]), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=shape), jnp.float32)
    pairs = [(lambda x, s, b: layer_norm(x, s, b, EPS), reference_layer_norm, (x, scale, bias)),
             (lambda x, s: rms_norm(x, s, EPS), reference_rms_norm, (x, scale))]
    for ours, reference, args in pairs:
        got, got_vjp = jax.vjp(ours, *args)
        want, want_vjp = jax.vjp(reference, *args)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        for g, w in zip(got_vjp(cotangent), want_vjp(cotangent)):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_bfloat16_inputs_get_float32_statistics_and_bfloat16_gradients():
    x = jnp.asarray(np.random.default_rng(1).normal(100.0, 1.0, (4, 32)), jnp.bfloat16)  # large mean
    scale, bias = jnp.ones(32, jnp.float32), jnp.zeros(32, jnp.float32)
    y = layer_norm(x, scale, bias, EPS)
    xf = np.asarray(x, np.float64)
    want = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + EPS)
    np.testing.assert_allclose(np.asarray(y), want, atol=1e-4)
    dx, dscale, dbias = jax.grad(lambda *a: jnp.sum(layer_norm(*a, EPS) ** 2), argnums=(0, 1, 2))(x, scale, bias)
    assert dx.dtype == jnp.bfloat16 and dscale.dtype == dbias.dtype == jnp.float32


@pytest.mark.parametrize("kind,flax_norm", [
    ("layernorm", nn.LayerNorm(epsilon=EPS, use_fast_variance=False)),
    ("rmsnorm", nn.RMSNorm(epsilon=EPS, use_fast_variance=False)),
])
def test_modules_match_flax_norms_parameter_for_parameter(kind, flax_norm):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 6, 12)), jnp.float32)
    ours = make_norm(kind, eps=EPS)
    variables = ours.init(jax.random.key(0), x)
    params = nn.meta.unbox(variables["params"])
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, flax_norm.init(jax.random.key(0), x)["params"])
    assert nn.get_partition_spec(variables)["params"]["scale"] == jax.sharding.PartitionSpec("embed")
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(0, 0.2, p.shape), p.dtype), params)

    def loss(module, params, x):
        return jnp.sum(jnp.sin(module.apply({"params": params}, x)))

    np.testing.assert_allclose(ours.apply({"params": params}, x), flax_norm.apply({"params": params}, x),
                               rtol=1e-5, atol=1e-5)
    got = jax.grad(loss, argnums=(1, 2))(ours, params, x)
    want = jax.grad(loss, argnums=(1, 2))(flax_norm, params, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
