"""Positions, norms, feed-forward and convolution blocks against numpy formulas."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp

from sora_jax.nn import (MLP, BottleneckBlock, Downsample, ResNetBlock, Upsample, apply_rope, make_norm,
                         sincos_2d, sinusoidal)


def test_sinusoidal_matches_the_transformer_formula():
    pos, dim = np.arange(50), 16
    want = np.zeros((50, dim))
    for p in pos:
        for i in range(dim // 2):
            want[p, 2 * i] = np.sin(p / 10000 ** (2 * i / dim))
            want[p, 2 * i + 1] = np.cos(p / 10000 ** (2 * i / dim))
    np.testing.assert_allclose(np.asarray(sinusoidal(jnp.arange(50), dim)), want, atol=1e-5)


def test_sincos_2d_encodes_rows_then_columns():
    table = np.asarray(sincos_2d(3, 4, 16))
    assert table.shape == (12, 16)
    rows = np.asarray(sinusoidal(jnp.arange(3), 8))
    cols = np.asarray(sinusoidal(jnp.arange(4), 8))
    np.testing.assert_allclose(table[1 * 4 + 2], np.concatenate([rows[1], cols[2]]), atol=1e-6)


def test_rope_scores_depend_only_on_the_offset_and_preserve_norms():
    q = jax.random.normal(jax.random.key(0), (1, 1, 2, 16))
    k = jax.random.normal(jax.random.key(1), (1, 1, 2, 16))

    def score(pq, pk):
        rq = apply_rope(q, jnp.array([[pq]]))
        rk = apply_rope(k, jnp.array([[pk]]))
        return jnp.einsum("bqnh,bknh->n", rq, rk)

    np.testing.assert_allclose(np.asarray(score(3, 1)), np.asarray(score(12, 10)), rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.asarray(score(3, 1)), np.asarray(score(3, 2)))
    rotated = apply_rope(q, jnp.array([[7]]))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(rotated), axis=-1),
                               np.linalg.norm(np.asarray(q), axis=-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(apply_rope(q, jnp.array([[0]]))), np.asarray(q))


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_norms_match_numpy_and_compute_statistics_in_float32(kind):
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 16)).astype(np.float32)
    norm = make_norm(kind, eps=1e-6)
    params = norm.init(jax.random.key(0), x)
    got = np.asarray(norm.apply(params, x))
    if kind == "layernorm":
        want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    else:
        want = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(got, want, atol=1e-5)
    bf16 = make_norm(kind, dtype=jnp.bfloat16)
    out = bf16.apply(params, jnp.asarray(x, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=5e-2)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "swiglu"])
def test_mlp_matches_numpy(activation):
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    mlp = MLP(16, activation)
    variables = mlp.init(jax.random.key(0), x)
    p = jax.tree.map(np.asarray, nn.meta.unbox(variables["params"]))
    acts = {"gelu": lambda h: 0.5 * h * (1 + sp.erf(h / np.sqrt(2))),
            "gelu_tanh": lambda h: 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3))),
            "relu": lambda h: np.maximum(h, 0)}
    if activation == "swiglu":
        gate = x @ p["wi_gate"]["kernel"] + p["wi_gate"]["bias"]
        up = x @ p["wi_up"]["kernel"] + p["wi_up"]["bias"]
        h = gate / (1 + np.exp(-gate)) * up
    else:
        h = acts[activation](x @ p["wi"]["kernel"] + p["wi"]["bias"])
    want = h @ p["wo"]["kernel"] + p["wo"]["bias"]
    np.testing.assert_allclose(np.asarray(mlp.apply(variables, x)), want, atol=1e-5)


def test_resnet_blocks_downsample_and_start_near_identity():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    block = ResNetBlock(16, strides=1, groups=4)
    variables = block.init(jax.random.key(1), x)
    # The last GroupNorm's scale starts at zero: the block is relu(x) at initialisation.
    np.testing.assert_allclose(np.asarray(block.apply(variables, x)), np.asarray(jax.nn.relu(x)), atol=1e-6)
    down = ResNetBlock(32, strides=2, groups=4)
    assert down.apply(down.init(jax.random.key(2), x), x).shape == (2, 4, 4, 32)
    bottleneck = BottleneckBlock(8, strides=2, groups=4)
    assert bottleneck.apply(bottleneck.init(jax.random.key(3), x), x).shape == (2, 4, 4, 32)


def test_upsample_and_downsample_shapes_and_nearest_resize():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
    up = Upsample(3)
    variables = up.init(jax.random.key(1), x)
    # With an identity kernel the upsample is a pure nearest-neighbour repeat.
    params = nn.meta.unbox(variables["params"])
    ident = np.zeros((3, 3, 3, 3), np.float32)
    ident[1, 1] = np.eye(3)
    params = {"conv": {"kernel": jnp.asarray(ident), "bias": jnp.zeros(3)}}
    got = np.asarray(up.apply({"params": params}, x))
    want = np.repeat(np.repeat(np.asarray(x), 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(got, want, atol=1e-6)
    down = Downsample(5)
    assert down.apply(down.init(jax.random.key(2), x), x).shape == (1, 2, 2, 5)
