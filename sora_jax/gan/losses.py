"""GAN objectives: hinge and non-saturating logistic losses, the R1 penalty, L1 on the hole,
and the exponential moving average of generator weights.

Discriminator outputs are raw logits (no sigmoid). Every loss is a mean over the batch, or,
given `weights` [B] (already divided by the number of counted rows, so that they sum to 1 over
the global batch), a weighted sum: rows that are not GAN examples carry weight 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("hinge", "logistic")


def average(values_B, weights_B=None):
    return jnp.mean(values_B) if weights_B is None else jnp.sum(values_B * weights_B)


def discriminator_loss(kind: str, real_logits, fake_logits, weights=None, fake_weights=None):
    """hinge: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; logistic: E[softplus(-D(x))] + E[softplus(D(G(z)))].
    Mismatched (real image, wrong caption) pairs go in with the fakes. fake_weights: defaults to weights."""
    fake_weights = weights if fake_weights is None else fake_weights
    if kind == "hinge":
        return average(jax.nn.relu(1.0 - real_logits), weights) + average(jax.nn.relu(1.0 + fake_logits), fake_weights)
    if kind == "logistic":
        return average(jax.nn.softplus(-real_logits), weights) + average(jax.nn.softplus(fake_logits), fake_weights)
    raise ValueError(f"GAN loss must be one of {LOSSES}, got {kind!r}")


def generator_loss(kind: str, fake_logits, weights=None):
    """hinge: -E[D(G(z))]; logistic (non-saturating): E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
    if kind == "hinge":
        return -average(fake_logits, weights)
    if kind == "logistic":
        return average(jax.nn.softplus(-fake_logits), weights)
    raise ValueError(f"GAN loss must be one of {LOSSES}, got {kind!r}")


def r1_penalty(discriminate, real_images_BxHxWxC, weights=None):
    """E[ ||grad_x D(x)||^2 ] over real images (Mescheder et al. 2018). `discriminate` maps
    images to per-example logits [B]. One backward pass of the summed logits gives every
    example's gradient (as StyleGAN2 computes it; minibatch-std adds small cross terms)."""
    grads = jax.grad(lambda x: jnp.sum(discriminate(x)))(real_images_BxHxWxC)
    return average(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))), weights)


def contrastive_loss(image_emb_BxD, text_emb_BxD, same_caption_BxB, weights=None, temperature=0.1):
    """Image-to-text InfoNCE over the batch: row i's image must pick caption i among the batch's
    captions. Other rows with the same caption are not negatives (they are left out of the
    softmax), nor are rows of weight 0. Embeddings are unit-norm; weights as in `average`."""
    logits = image_emb_BxD @ text_emb_BxD.T / temperature
    B = logits.shape[0]
    eye = jnp.eye(B, dtype=bool)
    present = jnp.ones((B,), bool) if weights is None else weights > 0
    candidates = eye | (~same_caption_BxB & present[None, :])
    log_probs = jnp.diagonal(logits) - jax.nn.logsumexp(jnp.where(candidates, logits, -jnp.inf), axis=-1)
    return average(-log_probs, weights)


def hole_l1(generated, target, known_BxHxWx1, row_weights=None, hole_values=None):
    """Mean absolute error over the unknown pixels (known = 1 where the pixel was given).
    row_weights [B]: 0 drops a row; hole_values: the number of counted hole values (pixels x
    channels) over the global batch, when the batch is split over devices."""
    hole = 1.0 - known_BxHxWx1
    if row_weights is not None:
        hole = hole * row_weights[:, None, None, None]
    if hole_values is None:
        hole_values = jnp.sum(hole) * generated.shape[-1]
    return jnp.sum(jnp.abs(generated - target) * hole) / jnp.maximum(hole_values, 1.0)


def ema_update(ema_params, params, decay):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), ema_params, params)
