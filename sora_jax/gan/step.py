"""One jit-compiled GAN step: update the discriminator, then the generator (two optimizers and
learning rates), then the generator's EMA. Pure: (state, batch, rng) -> (state, metrics).

batch: "image" [B, H, W, C] in [-1, 1], "cond" [B, C_text] (the text condition, see
generator.text_condition), and for inpainting "known" [B, H, W, 1] (1 where the pixel is given); optionally "weight" [B] (see make_gan_step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sora_jax.gan.augment import diff_augment
from sora_jax.gan.losses import (average, contrastive_loss, discriminator_loss, ema_update, generator_loss, hole_l1,
                                 r1_penalty)


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
    r1_every: int = 4  # lazy R1: every k steps, scaled by k ...
    # ... or, with r1_split, on every k-th row at every step (the same penalty in expectation, and
    # no conditional in the program: XLA:CPU runs a conditional's convolutions ~10x slower, which
    # made lazy R1 cost 3/4 of a 16 px GAN step on CPU).
    r1_split: bool = False
    l1_weight: float = 10.0  # inpainting: L1 on the hole
    augment: str = "translation,color"  # DiffAugment policy ("" for none)
    ema_decay: float = 0.999
    mismatch_weight: float = 0.5  # share of the "fake" term taken by (real image, wrong caption)
    # Mode seeking (Mao et al. 2019): a second sample per condition, and the generator loss adds
    # weight / (|G(z1) - G(z2)| / |z1 - z2|), so that it cannot ignore the noise and make one image
    # per prompt (0: off; costs one more generator pass).
    mode_seeking: float = 0.0
    # Image-text contrastive loss (model.gan.contrastive_dim heads): D learns to pick each real
    # image's caption among the batch's, G to make images that pick theirs (0: off).
    contrastive_weight: float = 0.0


def make_gan_step(generator, discriminator, g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                  training: GANTraining = GANTraining(), *, axis_name: str | None = None, with_cond_grad: bool = False):
    """batch may carry "weight" [B]: 1 for GAN rows, 0 for rows to ignore (other tasks, padding).
    axis_name: set under pmap; loss denominators, gradients and metrics are summed over it.
    with_cond_grad: also return d(discriminator loss)/d(cond), so a jointly trained text encoder
    can take the discriminator's gradient (the text embedding is part of D's projection)."""
    cfg = generator.cfg
    loss_kind = cfg.loss

    def all_sum(x):
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    def generate(g_params, z, batch):
        if cfg.inpaint:
            return generator.apply({"params": g_params}, z, batch["cond"], batch["image"] * batch["known"],
                                   batch["known"])
        return generator.apply({"params": g_params}, z, batch["cond"])

    contrastive = training.contrastive_weight > 0
    if contrastive and not cfg.contrastive_dim:
        raise ValueError("gan.contrastive_weight needs model.gan.contrastive_dim > 0 (the discriminator's heads)")

    def discriminate(d_params, spectral, images, cond, known, update, embeddings=False):
        """logits [B] (or (logits, image_emb, text_emb) with embeddings), new spectral vectors."""
        variables = {"params": d_params, "spectral": spectral}
        if not cfg.spectral_norm:
            return discriminator.apply(variables, images, cond, known, embeddings=embeddings), spectral
        out, updates = discriminator.apply(variables, images, cond, known, update_stats=update,
                                           embeddings=embeddings, mutable=["spectral"])
        return out, updates["spectral"]

    def gan_step(state: GANState, batch, rng):
        if axis_name is not None:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        z_key, aug_d, aug_g = jax.random.split(rng, 3)
        image = batch["image"]
        B = image.shape[0]
        known = batch["known"] if cfg.inpaint else None
        rows = batch["weight"] if "weight" in batch else jnp.ones((B,), image.dtype)
        weights = rows / jnp.maximum(all_sum(jnp.sum(rows)), 1.0)
        mismatched = jnp.roll(batch["cond"], 1, axis=0)  # another example's caption ...
        # ... unless it is the same caption: a true match must not be called fake.
        differs = jnp.any(jnp.abs(mismatched - batch["cond"]) > 1e-6, axis=-1).astype(rows.dtype) * rows
        same_caption = None
        if contrastive:  # [B, B]: rows whose captions are identical are not each other's negatives
            c = jax.lax.stop_gradient(batch["cond"])
            same_caption = jnp.all(jnp.abs(c[:, None, :] - c[None, :, :]) <= 1e-6, axis=-1)
        wrong_weights = differs / jnp.maximum(all_sum(jnp.sum(differs)), 1.0)
        z = jax.random.normal(z_key, (B, cfg.z_dim), image.dtype)
        fake = jax.lax.stop_gradient(generate(state.g_params, z, batch))

        def d_objective(d_params, cond):
            both = diff_augment(jnp.concatenate([image, fake], 0), aug_d, training.augment)  # one policy, draws per image
            real_aug, fake_aug = both[:B], both[B:]
            # Separate calls: minibatch std must not mix real and generated images in one group.
            real_out, spectral = discriminate(d_params, state.d_spectral, real_aug, cond, known, True, contrastive)
            real_logits = real_out[0] if contrastive else real_out
            fake_logits, _ = discriminate(d_params, spectral, fake_aug, cond, known, False)
            wrong_logits, _ = discriminate(d_params, spectral, real_aug, jnp.roll(cond, 1, axis=0), known, False)
            w = training.mismatch_weight
            loss = (1 - w) * discriminator_loss(loss_kind, real_logits, fake_logits, weights) + \
                w * discriminator_loss(loss_kind, real_logits, wrong_logits, weights, wrong_weights)
            matching = jnp.zeros((), loss.dtype)
            if contrastive:
                matching = contrastive_loss(real_out[1], real_out[2], same_caption, weights)
                loss = loss + training.contrastive_weight * matching

            def r1(_):
                penalty = r1_penalty(lambda x: discriminate(d_params, spectral, x, cond, known, False)[0], image,
                                     weights)
                return 0.5 * training.r1_gamma * training.r1_every * penalty
            if training.r1_gamma <= 0:
                r1_term = jnp.zeros((), loss.dtype)
            elif training.r1_every == 1:  # no conditional (see sora_jax/train/xla_cpu.py on XLA:CPU)
                r1_term = r1(None)
            elif training.r1_split:
                k = training.r1_every  # every k-th row: spread over the data shards alike
                part = rows[::k]
                part_weights = part / jnp.maximum(all_sum(jnp.sum(part)), 1.0)
                penalty = r1_penalty(lambda x: discriminate(d_params, spectral, x, cond[::k],
                                                            None if known is None else known[::k], False)[0],
                                     image[::k], part_weights)
                r1_term = 0.5 * training.r1_gamma * penalty
            else:
                r1_term = jax.lax.cond(state.step % training.r1_every == 0, r1,
                                       lambda _: jnp.zeros((), loss.dtype), None)
            return loss + r1_term, (loss, r1_term, spectral, average(real_logits, weights),
                                    average(fake_logits, weights), matching)

        (_, (d_loss, r1_term, spectral, real_mean, fake_mean, d_match)), (d_grads, cond_grad) = jax.value_and_grad(
            d_objective, argnums=(0, 1), has_aux=True)(state.d_params, batch["cond"])
        d_grads = all_sum(d_grads)
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        hole_values = None
        if cfg.inpaint:
            hole_values = all_sum(jnp.sum((1.0 - known) * rows[:, None, None, None])) * image.shape[-1]

        def g_objective(g_params):
            generated = generate(g_params, z, batch)
            out, _ = discriminate(d_params, spectral, diff_augment(generated, aug_g, training.augment),
                                  batch["cond"], known, False, contrastive)
            loss = generator_loss(loss_kind, out[0] if contrastive else out, weights)
            if contrastive:
                matching = contrastive_loss(out[1], out[2], same_caption, weights)
                loss = loss + training.contrastive_weight * matching
            l1 = hole_l1(generated, image, known, rows, hole_values) if cfg.inpaint else jnp.zeros((), loss.dtype)
            seeking = jnp.zeros((), loss.dtype)
            if training.mode_seeking:
                z2 = jax.random.normal(jax.random.fold_in(z_key, 1), z.shape, z.dtype)
                other = generate(g_params, z2, batch)
                ratio = jnp.mean(jnp.abs(generated - other), axis=(1, 2, 3)) / jnp.mean(jnp.abs(z - z2), axis=1)
                seeking = average(1.0 / (ratio + 1e-5), weights)
            return loss + training.l1_weight * l1 + training.mode_seeking * seeking, (loss, l1, seeking)

        (_, (g_loss, l1, seeking)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(state.g_params)
        g_grads = all_sum(g_grads)
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params, d_spectral=spectral,
                                  g_opt=g_opt, d_opt=d_opt,
                                  ema_params=ema_update(state.ema_params, g_params, training.ema_decay))
        metrics = all_sum({"d_loss": d_loss, "g_loss": g_loss, "r1": r1_term, "hole_l1": l1, "d_real": real_mean,
                           "d_fake": fake_mean, "mode_seeking": seeking})
        if contrastive:
            metrics["d_matching"] = all_sum(d_match)
        metrics.update(g_grad_norm=optax.tree.norm(g_grads), d_grad_norm=optax.tree.norm(d_grads))
        if with_cond_grad:
            return new_state, metrics, cond_grad
        return new_state, metrics

    return gan_step
