"""The residual-gradient barrier: an identity in value and gradient, that XLA keeps as a conditional."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.models import SoraModel, TextDecoderConfig, presets
from sora_jax.nn import grad_barrier


def test_identity_in_value_gradient_and_second_order():
    x = jnp.linspace(-2.0, 3.0, 12).reshape(3, 4)

    def f(x):
        y = grad_barrier.grad_barrier(x)
        return jnp.sum(jnp.sin(y) * y)

    np.testing.assert_array_equal(grad_barrier.grad_barrier(x), x)
    np.testing.assert_array_equal(jax.grad(f)(x), jnp.sin(x) + x * jnp.cos(x))
    # Reverse over reverse (a gradient penalty differentiates a gradient): d2/dx2 of sum(sin(x) x).
    hess_diag = jax.grad(lambda x: jnp.sum(jax.grad(f)(x)))(x)
    np.testing.assert_allclose(hess_diag, 2 * jnp.cos(x) - x * jnp.sin(x), rtol=1e-6, atol=1e-6)
    # A NaN gradient passes through unchanged (the conditional's other branch).
    nan_grad = jax.grad(lambda x: jnp.sum(grad_barrier.grad_barrier(x) * jnp.nan))(x)
    assert np.isnan(np.asarray(nan_grad)).all()


def test_modes():
    assert grad_barrier.enabled("on") and not grad_barrier.enabled("off")
    # This test process may have 1 or 8 CPU devices; "auto" is on only with one.
    assert grad_barrier.enabled("auto") == (jax.default_backend() == "cpu" and jax.device_count() == 1)
    with pytest.raises(ValueError, match="residual_grad_barrier"):
        grad_barrier.enabled("sometimes")


def _decoder_model(mode):
    decoder = TextDecoderConfig(num_layers=3, num_heads=2, d_model=32, mlp_dim=64, max_len=16, vocab_size=40,
                                cross_attention=False, scan_layers=False, residual_grad_barrier=mode)
    return SoraModel(dataclasses.replace(presets.tiny(), decoder=decoder, num_classes=0).validate())


def test_decoder_gradients_equal_with_and_without_the_barrier_and_the_barrier_survives_compilation():
    ids = jax.random.randint(jax.random.key(0), (2, 16), 0, 40)
    on, off = _decoder_model("on"), _decoder_model("off")
    params = off.init(jax.random.key(1), ids, method=off.decode)["params"]

    def loss(model):
        def f(p):
            logits = model.apply({"params": p}, ids, method=model.decode)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0])
        return jax.jit(jax.value_and_grad(f))

    (value_on, grads_on), (value_off, grads_off) = loss(on)(params), loss(off)(params)
    assert value_on == value_off
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_on, grads_off)

    def conditionals(model):
        return loss(model).lower(params).compile().as_text().count(" conditional(")
    # One per residual sublayer (self-attention, MLP) of each of the 3 layers, none without.
    assert conditionals(on) == 6 and conditionals(off) == 0
