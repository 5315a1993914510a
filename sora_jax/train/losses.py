"""Losses of the text tasks, kept as sums per task so that microbatches add up exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sora_jax.data.schema import TASKS

NUM_TASKS = len(TASKS)
CLASSIFY = TASKS.index("classify")
_GENERATION = (TASKS.index("t2i"), TASKS.index("inpaint"))  # a tuple: no device array at import


def token_losses(logits_BxTxV, targets_BxT):
    """Per-token cross-entropy in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), targets_BxT)


def token_z_losses(logits_BxTxV, z_loss: float):
    """PaLM's auxiliary z-loss per token, z_loss * logsumexp(logits)^2: it keeps the softmax
    normaliser near 1; a training term only, never part of a reported cross-entropy."""
    return z_loss * jnp.square(jax.nn.logsumexp(logits_BxTxV.astype(jnp.float32), axis=-1))


def per_task(values_B, task_id_B):
    """Sums of a per-example value by task: [NUM_TASKS]."""
    return jax.nn.one_hot(task_id_B, NUM_TASKS, dtype=jnp.float32).T @ values_B.astype(jnp.float32)


def loss_denominators(batch):
    """What each task's loss is averaged over, counted on the whole batch before microbatching:
    target tokens for decoder tasks, labelled examples for classification."""
    counts = jnp.zeros(NUM_TASKS, jnp.float32)
    if "decoder_mask" in batch:
        counts = counts + per_task(batch["decoder_mask"].sum(axis=1), batch["task_id"])
    if "label" in batch:
        counts = counts.at[CLASSIFY].add(classified_rows(batch).astype(jnp.float32).sum())
    return counts


def classified_rows(batch):
    """Rows the classifier trains on: labelled real examples. An image-generation row's label is
    the prompted class (for conditional accuracy), not a classification target."""
    generation = jnp.isin(batch["task_id"], jnp.asarray(_GENERATION))
    return (batch["label"] >= 0) & (batch["weight"] > 0) & ~generation
