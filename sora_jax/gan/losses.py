"""GAN objectives: hinge and non-saturating logistic losses, the R1 penalty, L1 on the hole,
and the exponential moving average of generator weights.

Discriminator outputs are raw logits (no sigmoid). Every loss is a mean over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("hinge", "logistic")


def discriminator_loss(kind: str, real_logits, fake_logits):
    """hinge: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; logistic: E[softplus(-D(x))] + E[softplus(D(G(z)))].
    Mismatched (real image, wrong caption) pairs go in with the fakes."""
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    raise ValueError(f"GAN loss must be one of {LOSSES}, got {kind!r}")


def generator_loss(kind: str, fake_logits):
    """hinge: -E[D(G(z))]; logistic (non-saturating): E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    raise ValueError(f"GAN loss must be one of {LOSSES}, got {kind!r}")


def r1_penalty(discriminate, real_images_BxHxWxC):
    """E[ ||grad_x D(x)||^2 ] over real images (Mescheder et al. 2018). `discriminate` maps
    images to per-example logits [B]. One backward pass of the summed logits gives every
    example's gradient (as StyleGAN2 computes it; minibatch-std adds small cross terms)."""
    grads = jax.grad(lambda x: jnp.sum(discriminate(x)))(real_images_BxHxWxC)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))


def hole_l1(generated, target, known_BxHxWx1):
    """Mean absolute error over the unknown pixels (known = 1 where the pixel was given)."""
    hole = 1.0 - known_BxHxWx1
    channels = generated.shape[-1]
    return jnp.sum(jnp.abs(generated - target) * hole) / jnp.maximum(jnp.sum(hole) * channels, 1.0)


def ema_update(ema_params, params, decay):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), ema_params, params)
