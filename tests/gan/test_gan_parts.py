"""The GAN's parts against references: losses by hand, the contrastive loss against a loop in
numpy, R1 against per-example gradients, EMA
arithmetic, minibatch std and spectral norm against numpy, projection conditioning, exact
inpainting composites, and logical names on every parameter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.gan import (Discriminator, GANConfig, Generator, contrastive_loss, discriminator_loss, ema_update,
                          generator_loss, hole_l1, minibatch_std, r1_penalty, text_condition)
from sora_jax.gan.spectral import SpectralLayer
from sora_jax.models.config import ConfigError

REAL, FAKE = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 3.0])


def test_hinge_and_logistic_losses_by_hand():
    # hinge D: mean(relu(1 - [2, .5, -1])) + mean(relu(1 + [-2, 0, 3])) = (0 + .5 + 2)/3 + (0 + 1 + 4)/3
    assert float(discriminator_loss("hinge", REAL, FAKE)) == pytest.approx(2.5 / 3 + 5 / 3)
    assert float(generator_loss("hinge", FAKE)) == pytest.approx(-1 / 3)
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    want_d = np.mean(sp(-np.asarray(REAL))) + np.mean(sp(np.asarray(FAKE)))
    assert float(discriminator_loss("logistic", REAL, FAKE)) == pytest.approx(want_d, rel=1e-6)
    assert float(generator_loss("logistic", FAKE)) == pytest.approx(np.mean(sp(-np.asarray(FAKE))), rel=1e-6)
    with pytest.raises(ValueError, match="wasserstein"):
        generator_loss("wasserstein", FAKE)


def test_contrastive_loss_matches_a_numpy_loop_leaving_out_duplicates_and_dropped_rows():
    rng = np.random.default_rng(0)
    B, D = 6, 5
    u = rng.normal(size=(B, D)); u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = rng.normal(size=(B, D)); v /= np.linalg.norm(v, axis=1, keepdims=True)
    captions = np.array([0, 1, 0, 2, 3, 1])  # rows 0 and 2 share a caption, rows 1 and 5 too
    same = captions[:, None] == captions[None, :]
    rows = np.array([1, 1, 1, 1, 0, 1.0])  # row 4 is not a GAN row
    weights = rows / rows.sum()
    want = 0.0
    for i in range(B):
        logits = {j: u[i] @ v[j] / 0.1 for j in range(B) if j == i or (not same[i, j] and rows[j] > 0)}
        want += weights[i] * -(logits[i] - np.log(sum(np.exp(x) for x in logits.values())))
    got = contrastive_loss(jnp.asarray(u), jnp.asarray(v), jnp.asarray(same), jnp.asarray(weights))
    assert float(got) == pytest.approx(want, rel=1e-5)
    # Unweighted, no duplicates: the plain InfoNCE (cross-entropy against the diagonal).
    logits = u @ v.T / 0.1
    plain = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
    assert float(contrastive_loss(jnp.asarray(u), jnp.asarray(v), jnp.eye(B, dtype=bool))) == pytest.approx(plain,
                                                                                                        rel=1e-5)


def test_the_contrastive_heads_give_unit_embeddings_only_when_configured():
    cfg = GANConfig(image_size=16, base_channels=8, max_channels=32, contrastive_dim=6)
    _, d, _, d_vars, (_, cond, image, _) = _gan(cfg)
    logits, image_emb, text_emb = d.apply(d_vars, image, cond, embeddings=True)
    np.testing.assert_allclose(logits, d.apply(d_vars, image, cond), rtol=1e-6)
    assert image_emb.shape == text_emb.shape == (4, 6)
    np.testing.assert_allclose(jnp.linalg.norm(image_emb, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(jnp.linalg.norm(text_emb, axis=1), 1.0, rtol=1e-4)
    plain = GANConfig(image_size=16, base_channels=8, max_channels=32)
    _, d, _, d_vars, _ = _gan(plain)
    with pytest.raises(ValueError, match="contrastive_dim"):
        d.apply(d_vars, image, cond, embeddings=True)


def test_r1_is_the_mean_squared_gradient_norm_of_each_real_image():
    cfg = GANConfig(image_size=8, minibatch_std=False, base_channels=8)
    d = Discriminator(cfg)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 3))
    cond = jax.random.normal(jax.random.key(1), (3, 5))
    params = d.init(jax.random.key(2), x, cond)
    got = r1_penalty(lambda imgs: d.apply(params, imgs, cond), x)
    norms = []
    for i in range(3):  # each example on its own
        g = jax.grad(lambda xi: d.apply(params, xi[None], cond[i:i + 1])[0])(x[i])
        norms.append(float(jnp.sum(g ** 2)))
    assert float(got) == pytest.approx(np.mean(norms), rel=1e-5)
    # And on a function with a known gradient: D(x) = sum(x^2) -> |2x|^2.
    assert float(r1_penalty(lambda v: jnp.sum(v ** 2, axis=(1, 2, 3)), x)) == pytest.approx(
        float(jnp.mean(jnp.sum((2 * x) ** 2, axis=(1, 2, 3)))), rel=1e-6)


def test_ema_update_arithmetic():
    ema = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
    new = {"a": jnp.array([3.0, 0.0]), "b": {"c": jnp.array(0.0)}}
    out = ema_update(ema, new, 0.9)
    np.testing.assert_allclose(out["a"], [1.2, 1.8], rtol=1e-6)
    np.testing.assert_allclose(out["b"]["c"], 3.6, rtol=1e-6)


def test_minibatch_std_matches_numpy():
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype(np.float32)
    out = np.asarray(minibatch_std(jnp.asarray(x), group=4))
    groups = x.reshape(4, 2, 4, 4, 3)
    stat = np.sqrt(groups.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))  # one value per group
    for i in range(8):
        np.testing.assert_allclose(out[i, ..., 3], stat[i % 2], rtol=1e-5)
    np.testing.assert_array_equal(out[..., :3], x)


def test_spectral_norm_divides_by_the_largest_singular_value():
    layer = SpectralLayer(6, "dense", spectral_norm=True, kernel_axes=(None, "embed"))
    x = jnp.ones((2, 5))
    variables = layer.init(jax.random.key(0), x)
    for _ in range(50):  # power iteration converges
        _, updates = layer.apply(variables, x, update_stats=True, mutable=["spectral"])
        variables = {**variables, **updates}
    kernel = np.asarray(nn.unbox(variables["params"])["kernel"])
    bias = np.asarray(nn.unbox(variables["params"])["bias"])
    y = np.asarray(layer.apply(variables, x))
    sigma = np.linalg.svd(kernel, compute_uv=False)[0]
    np.testing.assert_allclose(y - bias, np.ones((2, 5)) @ kernel / sigma, rtol=1e-4)


def _gan(cfg, batch=4, cond_dim=12):
    key = jax.random.key(0)
    z = jax.random.normal(key, (batch, cfg.z_dim))
    cond = jax.random.normal(jax.random.key(1), (batch, cond_dim))
    image = jax.random.uniform(jax.random.key(2), (batch, cfg.image_size, cfg.image_size, cfg.channels), minval=-1)
    known = (jax.random.uniform(jax.random.key(3), (batch, cfg.image_size, cfg.image_size, 1)) > 0.5)
    known = known.astype(jnp.float32)
    g, d = Generator(cfg), Discriminator(cfg)
    g_vars = g.init(jax.random.key(4), z, cond, image * known, known)
    d_vars = d.init(jax.random.key(5), image, cond, known if cfg.inpaint else None)
    return g, d, g_vars, d_vars, (z, cond, image, known)


@pytest.mark.parametrize("size", [16, 32])
def test_inpainting_keeps_the_known_pixels_exactly(size):
    cfg = GANConfig(image_size=size, inpaint=True, base_channels=8, max_channels=32)
    g, _, g_vars, _, (z, cond, image, known) = _gan(cfg)
    out = g.apply(g_vars, z, cond, image * known, known)
    assert out.shape == image.shape and float(jnp.max(jnp.abs(out))) <= 1.0
    kept = np.asarray(known[..., 0] > 0)
    np.testing.assert_array_equal(np.asarray(out)[kept], np.asarray(image)[kept])
    assert float(hole_l1(out, image, known)) > 0  # the hole was generated, not copied


def test_swapping_captions_changes_the_discriminator_output():
    cfg = GANConfig(image_size=16, base_channels=8, max_channels=32, spectral_norm=True)
    _, d, _, d_vars, (_, cond, image, _) = _gan(cfg)
    matched = d.apply(d_vars, image, cond)
    swapped = d.apply(d_vars, image, jnp.roll(cond, 1, axis=0))
    assert matched.shape == (4,)
    assert float(jnp.max(jnp.abs(matched - swapped))) > 1e-3


def test_every_parameter_of_both_networks_has_logical_names():
    cfg = GANConfig(image_size=16, inpaint=True, base_channels=8, max_channels=32, spectral_norm=True)
    _, _, g_vars, d_vars, _ = _gan(cfg)
    for variables in (g_vars, d_vars):
        leaves = jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
        assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
        assert all(len(x.names) == x.value.ndim for x in leaves)


def test_text_condition_is_frozen_or_trained_by_config():
    pooled, tokens = jnp.ones((2, 4)), jnp.arange(24.0).reshape(2, 3, 4)
    valid = jnp.array([[True, True, False], [True, False, False]])
    cond = text_condition(GANConfig(), pooled, tokens, valid)
    np.testing.assert_allclose(cond[0, 4:], tokens[0, :2].mean(0))
    np.testing.assert_allclose(cond[1, 4:], tokens[1, 0])
    for mode, expect_zero in (("frozen", True), ("joint", False)):
        grad = jax.grad(lambda t: jnp.sum(text_condition(GANConfig(text_conditioning=mode), pooled, t, valid)))(tokens)
        assert bool(jnp.all(grad == 0)) == expect_zero


@pytest.mark.parametrize("key,value,message", [("image_size", 24, "model.gan.image_size"),
                                               ("loss", "wgan", "model.gan.loss"),
                                               ("text_conditioning", "maybe", "model.gan.text_conditioning"),
                                               ("contrastive_dim", -1, "model.gan.contrastive_dim")])
def test_bad_gan_settings_name_their_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        GANConfig(**{key: value}).validate()
