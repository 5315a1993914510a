"""One jit-compiled GAN step: update the discriminator, then the generator (two optimizers and
learning rates), then the generator's EMA. Pure: (state, batch, rng) -> (state, metrics).

batch: "image" [B, H, W, C] in [-1, 1], "cond" [B, C_text] (the text condition, see
generator.text_condition), and for inpainting "known" [B, H, W, 1] (1 where the pixel is given).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sora_jax.gan.augment import diff_augment
from sora_jax.gan.losses import discriminator_loss, ema_update, generator_loss, hole_l1, r1_penalty


@flax.struct.dataclass
class GANState:
    step: jax.Array
    g_params: Any
    d_params: Any
    d_spectral: Any  # the discriminator's power-iteration vectors ({} without spectral norm)
    g_opt: Any
    d_opt: Any
    ema_params: Any

    @classmethod
    def create(cls, g_params, d_variables, g_tx, d_tx):
        d_params = d_variables["params"]
        return cls(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                   d_spectral=d_variables.get("spectral", {}), g_opt=g_tx.init(g_params), d_opt=d_tx.init(d_params),
                   ema_params=jax.tree.map(jnp.copy, g_params))


@dataclasses.dataclass(frozen=True)
class GANTraining:
    """The training settings of the GAN step."""

    r1_gamma: float = 1.0  # weight gamma / 2 on E|grad D(x)|^2 of real images
    r1_every: int = 4  # lazy R1: every k steps, scaled by k
    l1_weight: float = 10.0  # inpainting: L1 on the hole
    augment: str = "translation,color"  # DiffAugment policy ("" for none)
    ema_decay: float = 0.999
    mismatch_weight: float = 0.5  # share of the "fake" term taken by (real image, wrong caption)


def make_gan_step(generator, discriminator, g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                  training: GANTraining = GANTraining()):
    cfg = generator.cfg
    loss_kind = cfg.loss

    def generate(g_params, z, batch):
        if cfg.inpaint:
            return generator.apply({"params": g_params}, z, batch["cond"], batch["image"] * batch["known"],
                                   batch["known"])
        return generator.apply({"params": g_params}, z, batch["cond"])

    def discriminate(d_params, spectral, images, cond, known, update):
        variables = {"params": d_params, "spectral": spectral}
        if not cfg.spectral_norm:
            return discriminator.apply(variables, images, cond, known), spectral
        logits, updates = discriminator.apply(variables, images, cond, known, update_stats=update,
                                              mutable=["spectral"])
        return logits, updates["spectral"]

    def gan_step(state: GANState, batch, rng):
        z_key, aug_d, aug_g = jax.random.split(rng, 3)
        image, cond = batch["image"], batch["cond"]
        known = batch["known"] if cfg.inpaint else None
        z = jax.random.normal(z_key, (image.shape[0], cfg.z_dim), image.dtype)
        fake = jax.lax.stop_gradient(generate(state.g_params, z, batch))
        mismatched = jnp.roll(cond, 1, axis=0)  # another example's caption

        def d_objective(d_params):
            both = diff_augment(jnp.concatenate([image, fake], 0), aug_d, training.augment)  # one policy, draws per image
            real_aug, fake_aug = both[:image.shape[0]], both[image.shape[0]:]
            # Separate calls: minibatch std must not mix real and generated images in one group.
            real_logits, spectral = discriminate(d_params, state.d_spectral, real_aug, cond, known, True)
            fake_logits, _ = discriminate(d_params, spectral, fake_aug, cond, known, False)
            wrong_logits, _ = discriminate(d_params, spectral, real_aug, mismatched, known, False)
            w = training.mismatch_weight
            loss = (1 - w) * discriminator_loss(loss_kind, real_logits, fake_logits) + \
                w * discriminator_loss(loss_kind, real_logits, wrong_logits)

            def r1(_):
                penalty = r1_penalty(lambda x: discriminate(d_params, spectral, x, cond, known, False)[0], image)
                return 0.5 * training.r1_gamma * training.r1_every * penalty
            if training.r1_gamma <= 0:
                r1_term = jnp.zeros((), loss.dtype)
            elif training.r1_every == 1:  # no conditional (see sora_jax/train/xla_cpu.py on XLA:CPU)
                r1_term = r1(None)
            else:
                r1_term = jax.lax.cond(state.step % training.r1_every == 0, r1,
                                       lambda _: jnp.zeros((), loss.dtype), None)
            return loss + r1_term, (loss, r1_term, spectral, jnp.mean(real_logits), jnp.mean(fake_logits))

        (d_total, (d_loss, r1_term, spectral, real_mean, fake_mean)), d_grads = jax.value_and_grad(
            d_objective, has_aux=True)(state.d_params)
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)

        def g_objective(g_params):
            generated = generate(g_params, z, batch)
            logits, _ = discriminate(d_params, spectral, diff_augment(generated, aug_g, training.augment), cond,
                                     known, False)
            loss = generator_loss(loss_kind, logits)
            l1 = hole_l1(generated, image, known) if cfg.inpaint else jnp.zeros((), loss.dtype)
            return loss + training.l1_weight * l1, (loss, l1)

        (g_total, (g_loss, l1)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(state.g_params)
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params, d_spectral=spectral,
                                  g_opt=g_opt, d_opt=d_opt,
                                  ema_params=ema_update(state.ema_params, g_params, training.ema_decay))
        metrics = {"d_loss": d_loss, "g_loss": g_loss, "r1": r1_term, "hole_l1": l1, "d_real": real_mean,
                   "d_fake": fake_mean, "g_grad_norm": optax.tree.norm(g_grads),
                   "d_grad_norm": optax.tree.norm(d_grads)}
        return new_state, metrics

    return gan_step
