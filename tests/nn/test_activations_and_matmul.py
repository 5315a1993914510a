"""The exact GELU's values and hand-written derivative, and the flattened matmul of Linear /
Embed.attend, against references (scipy in float64, autodiff of the unflattened einsum)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp

from sora_jax.nn.activations import gelu_exact
from sora_jax.nn.linear import matmul_trailing

X = np.concatenate([np.linspace(-12, 12, 4001), [-30.0, -6.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6.0, 30.0]])


def test_gelu_matches_the_erf_formula_in_float64():
    want = X * 0.5 * (1 + sp.erf(X / np.sqrt(2)))
    got = np.asarray(gelu_exact(jnp.asarray(X, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, np.asarray(jax.nn.gelu(jnp.asarray(X, jnp.float32), approximate=False)),
                               rtol=1e-6, atol=1e-6)


def test_gelu_derivative_matches_the_closed_form_and_autodiff():
    want = 0.5 * (1 + sp.erf(X / np.sqrt(2))) + X * np.exp(-X ** 2 / 2) / np.sqrt(2 * np.pi)
    x32 = jnp.asarray(X, jnp.float32)
    got = np.asarray(jax.vmap(jax.grad(gelu_exact))(x32), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    reference = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x32)
    np.testing.assert_allclose(got, np.asarray(reference), rtol=1e-5, atol=1e-6)
    # Cotangents are carried through, not just ones: a vector-Jacobian product with weights.
    weights = np.random.default_rng(0).normal(size=X.shape).astype(np.float32)
    _, vjp = jax.vjp(gelu_exact, x32)
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(weights))[0], np.float64), weights * want,
                               rtol=1e-5, atol=1e-6)


def test_gelu_keeps_bfloat16_and_computes_in_float32():
    x = jnp.asarray(X[::10], jnp.bfloat16)
    y = gelu_exact(x)
    assert y.dtype == jnp.bfloat16 and jax.grad(lambda v: gelu_exact(v).sum())(x).dtype == jnp.bfloat16
    xf = np.asarray(x, np.float64)
    np.testing.assert_allclose(np.asarray(y, np.float64), xf * 0.5 * (1 + sp.erf(xf / np.sqrt(2))),
                               rtol=1e-2, atol=1e-2)


def test_gelu_backward_recomputes_erf_instead_of_reading_the_forwards():
    """The property the MLP's speed rests on, checked without timing: XLA's common-subexpression
    elimination would merge the backward's erf(x) with the forward's, and the forward would then
    write erf(x) out for the backward ([tokens, mlp]) and read it back: two passes, not one. The
    barrier in the backward keeps two separate computations of erf in the compiled program."""
    def loss(w_in, x, w_out):
        return jnp.sum(gelu_exact(x @ w_in) @ w_out)

    w_in, x, w_out = jnp.ones((16, 64)), jnp.ones((32, 16)), jnp.ones((64, 8))
    hlo = jax.jit(jax.value_and_grad(loss)).lower(w_in, x, w_out).compile().as_text()
    computations = re.split(r"\n(?=\S)", hlo)
    assert sum(" erf(" in c for c in computations) == 2, "erf is computed once and shared by both passes"


@pytest.mark.parametrize("x_shape,kernel_shape,num_in,transpose", [
    ((2, 5, 6), (6, 7), 1, False),            # dense over the last axis
    ((2, 5, 3, 4), (3, 4, 6), 2, False),       # attention output projection: heads x head_dim -> embed
    ((2, 5, 6), (6, 3, 2, 4), 1, False),       # fused q/k/v: embed -> 3 x heads x head_dim
    ((2, 5, 6), (9, 6), 1, True),              # tied output embedding: table [vocab, embed]
    ((6,), (6, 7), 1, False),                  # no leading axis
    ((0, 5, 6), (6, 7), 1, False),             # empty batch
])
def test_matmul_trailing_equals_the_unflattened_contraction_and_its_gradients(x_shape, kernel_shape, num_in,
                                                                               transpose):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=kernel_shape), jnp.float32)
    letters = "abcdefgh"
    lead, ins = letters[:len(x_shape) - num_in], "pq"[:num_in]
    outs = "uvw"[:len(kernel_shape) - num_in]
    k_spec = outs + ins if transpose else ins + outs
    spec = f"{lead}{ins},{k_spec}->{lead}{outs}"

    def reference(x, kernel):
        return jnp.einsum(spec, x, kernel, precision="highest")

    def ours(x, kernel):
        return matmul_trailing(x, kernel, num_in, transpose_kernel=transpose)

    np.testing.assert_allclose(ours(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
    cotangent = jnp.asarray(rng.normal(size=reference(x, kernel).shape), jnp.float32)
    got = jax.vjp(ours, x, kernel)[1](cotangent)
    want = jax.vjp(reference, x, kernel)[1](cotangent)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
