"""The GAN step: each network's update lowers its own loss, lazy R1 runs every k steps (split R1
on every k-th row at every step), the contrastive loss pairs images with their captions, the
inpainting step trains on the hole, and a sharded step gives the single-device numbers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sora_jax.gan import Discriminator, GANConfig, Generator, discriminator_loss, generator_loss
from sora_jax.gan.step import GANState, GANTraining, make_gan_step
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES, batch_sharding, replicated, state_shardings

B, COND = 8, 12


def setup(inpaint=False, spectral_norm=False, lr=(1e-3, 1e-3), training=None, sgd=False, contrastive_dim=0):
    cfg = GANConfig(image_size=16, base_channels=8, max_channels=32, z_dim=16, w_dim=32, inpaint=inpaint,
                    spectral_norm=spectral_norm, contrastive_dim=contrastive_dim)
    g, d = Generator(cfg), Discriminator(cfg)
    if sgd:  # Adam's first steps are sign-like and would magnify float reassociation
        g_tx, d_tx = optax.sgd(lr[0]), optax.sgd(lr[1])
    else:
        g_tx, d_tx = optax.adam(lr[0], b1=0.0, b2=0.99), optax.adam(lr[1], b1=0.0, b2=0.99)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.uniform(-1, 1, (B, 16, 16, 3)), jnp.float32),
             "cond": jnp.asarray(rng.normal(size=(B, COND)), jnp.float32),
             "known": jnp.asarray(rng.random((B, 16, 16, 1)) > 0.5, jnp.float32)}

    def init(key):
        kg, kd = jax.random.split(key)
        g_vars = g.init(kg, jnp.zeros((1, cfg.z_dim)), batch["cond"][:1], batch["image"][:1], batch["known"][:1])
        d_vars = d.init(kd, batch["image"][:2], batch["cond"][:2], batch["known"][:2] if inpaint else None)
        return GANState.create(g_vars["params"], d_vars, g_tx, d_tx)
    step = make_gan_step(g, d, g_tx, d_tx, training or GANTraining(augment="", r1_gamma=0.0))
    return cfg, g, d, init, step, batch


def test_each_update_lowers_its_own_loss():
    cfg, g, d, init, step, batch = setup()
    state = nn.unbox(init(jax.random.key(0)))
    z = jax.random.normal(jax.random.split(jax.random.key(1), 3)[0], (B, cfg.z_dim))

    def losses(s_d, s_g):
        fake = g.apply({"params": s_g.g_params}, z, batch["cond"])
        d_real = d.apply({"params": s_d.d_params}, batch["image"], batch["cond"])
        d_fake = d.apply({"params": s_d.d_params}, fake, batch["cond"])
        return float(discriminator_loss("hinge", d_real, d_fake)), float(generator_loss("hinge", d_fake))

    new, metrics = jax.jit(step)(state, batch, jax.random.key(1))
    d_before, _ = losses(state, state)
    d_after, g_before = losses(new, state)  # the new discriminator against the old generator
    _, g_after = losses(new, new)
    assert d_after < d_before and g_after < g_before
    assert metrics["d_loss"] == pytest.approx(
        0.5 * d_before + 0.5 * float(discriminator_loss("hinge", d.apply(
            {"params": state.d_params}, batch["image"], batch["cond"]), d.apply(
            {"params": state.d_params}, batch["image"], jnp.roll(batch["cond"], 1, 0)))), rel=1e-5)
    # The EMA moved a little towards the new generator.
    leaf = lambda t: jax.tree.leaves(t)[0]  # noqa: E731
    np.testing.assert_allclose(leaf(new.ema_params), 0.999 * leaf(state.g_params) + 0.001 * leaf(new.g_params),
                               rtol=1e-5, atol=1e-7)


def metric_over_steps(init, step, batch, name, steps):
    """metrics[name] at each of `steps` jitted steps from a fresh state (every loss finite)."""
    state = nn.unbox(init(jax.random.key(0)))
    step = jax.jit(step)
    values = []
    for i in range(steps):
        state, metrics = step(state, batch, jax.random.key(i))
        values.append(float(metrics[name]))
        assert np.isfinite(float(metrics["d_loss"])) and np.isfinite(float(metrics["g_loss"]))
    return values


def test_lazy_r1_runs_every_k_steps_and_the_losses_fall_over_a_few_steps():
    _, _, _, init, step, batch = setup(spectral_norm=True, training=GANTraining(r1_gamma=1.0, r1_every=2,
                                                                              augment="translation,color,cutout"))
    r1 = metric_over_steps(init, step, batch, "r1", 4)
    assert r1[0] > 0 and r1[2] > 0 and r1[1] == 0 and r1[3] == 0


def test_split_r1_penalises_every_kth_row_at_every_step():
    # The conditional-free schedule (gan.r1_schedule = "split"): each step, R1 on rows 0, k, 2k, ...
    # with weight gamma / 2 (no factor k), so that it matches lazy R1 in expectation.
    _, _, d, init, step, batch = setup(training=GANTraining(r1_gamma=2.0, r1_every=2, r1_split=True, augment=""))
    state = nn.unbox(init(jax.random.key(0)))
    step = jax.jit(step)
    for i in range(2):
        logits = lambda x, s=state: jnp.sum(d.apply({"params": s.d_params}, x, batch["cond"][::2]))  # noqa: E731
        grads = np.asarray(jax.grad(logits)(batch["image"][::2]))
        expected = 0.5 * 2.0 * np.mean(np.sum(grads ** 2, axis=(1, 2, 3)))
        state, metrics = step(state, batch, jax.random.key(i))
        assert float(metrics["r1"]) == pytest.approx(expected, rel=1e-4)


def test_the_contrastive_loss_teaches_the_discriminator_which_caption_is_whose():
    training = GANTraining(augment="", r1_gamma=0.0, contrastive_weight=1.0)
    _, g, d, init, step, batch = setup(training=training, contrastive_dim=8, lr=(1e-3, 3e-3))
    batch = dict(batch, cond=batch["cond"].at[1].set(batch["cond"][0]))  # rows 0 and 1: one caption
    matching = metric_over_steps(init, step, batch, "d_matching", 20)
    # Chance is log 7 (each row has its own caption and 6 others to choose from; the random heads
    # start worse than chance, their logits being divided by the temperature 0.1).
    assert matching[-1] < 0.1 * min(matching[0], np.log(7))
    _, g, d, *_ = setup()  # no contrastive heads
    with pytest.raises(ValueError, match="contrastive_dim"):
        make_gan_step(g, d, optax.sgd(0.1), optax.sgd(0.1), training)


def test_the_inpainting_step_trains_on_the_hole():
    _, _, _, init, step, batch = setup(inpaint=True, lr=(3e-3, 1e-3))
    state = nn.unbox(init(jax.random.key(0)))
    step = jax.jit(step)
    first = None
    for i in range(15):
        state, metrics = step(state, batch, jax.random.key(i))
        first = first if first is not None else float(metrics["hole_l1"])
    assert float(metrics["hole_l1"]) < first


@pytest.mark.parametrize("shape, r1_every", [((2, 2, 2), 1), ((8, 1, 1), 2)])
def test_a_sharded_gan_step_matches_one_device(shape, r1_every):
    # No lax.cond holding collectives (XLA:CPU can run those out of order on fake devices): R1 at
    # every step, on every row or (split) on every second row; the second case also trains the
    # contrastive heads, whose loss compares every pair of rows across the devices.
    split = r1_every > 1
    training = GANTraining(r1_gamma=1.0, r1_every=r1_every, r1_split=split, contrastive_weight=float(split))
    _, _, _, init, step, batch = setup(spectral_norm=True, training=training, lr=(0.05, 0.05), sgd=True,
                                       contrastive_dim=8 if split else 0)

    def run(mesh):
        abstract = jax.eval_shape(init, jax.random.key(0))
        shardings = state_shardings(abstract, mesh, DEFAULT_RULES)
        with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
            state = jax.jit(lambda k: nn.unbox(init(k)), out_shardings=shardings)(jax.random.key(0))
            data = jax.device_put(batch, batch_sharding(mesh, DEFAULT_RULES))
            f = jax.jit(step, in_shardings=(shardings, batch_sharding(mesh, DEFAULT_RULES), replicated(mesh)),
                        out_shardings=(shardings, replicated(mesh)))
            out = []
            for i in range(3):
                state, metrics = f(state, data, jax.random.key(i))
                out.append(float(metrics["d_loss"]) + float(metrics["g_loss"]))
                jax.block_until_ready(state)
        return out, jax.tree.map(np.asarray, jax.device_get(state))

    ref_losses, ref_state = run(make_mesh((1, 1, 1), jax.devices()[:1]))
    losses, state = run(make_mesh(shape, jax.devices()[:8]))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mode_seeking_penalises_a_generator_that_ignores_its_noise():
    _, g, _, init, _, batch = setup()
    state = nn.unbox(init(jax.random.key(0)))
    base = GANTraining(augment="", r1_gamma=0.0)
    seeking = GANTraining(augment="", r1_gamma=0.0, mode_seeking=1.0)
    g_tx = d_tx = optax.sgd(0.0)  # no update: only the reported terms are compared
    _, m0 = jax.jit(make_gan_step(g, Discriminator(g.cfg), g_tx, d_tx, base))(state, batch, jax.random.key(3))
    _, m1 = jax.jit(make_gan_step(g, Discriminator(g.cfg), g_tx, d_tx, seeking))(state, batch, jax.random.key(3))
    assert float(m0["mode_seeking"]) == 0.0
    # Recompute 1 / (|G(z1) - G(z2)| / |z1 - z2|) by hand with the step's noise.
    z_key = jax.random.split(jax.random.key(3), 3)[0]
    z1 = jax.random.normal(z_key, (B, g.cfg.z_dim))
    z2 = jax.random.normal(jax.random.fold_in(z_key, 1), (B, g.cfg.z_dim))
    x1, x2 = (g.apply({"params": state.g_params}, z, batch["cond"]) for z in (z1, z2))
    ratio = jnp.mean(jnp.abs(x1 - x2), axis=(1, 2, 3)) / jnp.mean(jnp.abs(z1 - z2), axis=1)
    np.testing.assert_allclose(float(m1["mode_seeking"]), float(jnp.mean(1.0 / (ratio + 1e-5))), rtol=1e-4)
    assert float(m1["g_loss"]) == pytest.approx(float(m0["g_loss"]), rel=1e-5)
