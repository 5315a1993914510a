"""The pure train step: (state, batch, rng) -> (state, metrics).

One loss covers every text task in the batch: the decoder's masked next-token cross-entropy
for lm / seq2seq / caption / vqa rows and the classifier's cross-entropy for labelled rows.
Each task's loss is its sum divided by its count on the whole batch (computed before
microbatching), weighted by config, so gradient accumulation over k microbatches (lax.scan)
gives exactly the gradient of one step on the whole batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from sora_jax.data.schema import TASKS
from sora_jax.models.sora import SoraModel
from sora_jax.nn.masks import segment_mask
from sora_jax.train import losses
from sora_jax.train.state import TrainState

NONFINITE_POLICIES = ("skip", "abort")


def _forward_sums(model: SoraModel, params, batch, rng, *, train, z_loss=0.0, with_accuracy=False):
    """Per-task sums [NUM_TASKS] for one (micro)batch: "loss", the cross-entropy; "z", the z-loss
    term (zero unless z_loss > 0); with_accuracy, "correct", the counts of correct predictions
    (every target token right for decoder tasks, the class for classify)."""
    rngs = {"dropout": rng}
    memory = memory_valid = None
    pooled = None
    if "text" in batch or "image" in batch:
        enc = model.apply({"params": params}, batch.get("text"), batch.get("text_valid"), batch.get("image"),
                          batch.get("image_present"), deterministic=not train, rngs=rngs, method=SoraModel.encode)
        memory, memory_valid, pooled = enc
    sums = jnp.zeros(losses.NUM_TASKS, jnp.float32)
    z_sums = jnp.zeros(losses.NUM_TASKS, jnp.float32)
    correct = jnp.zeros(losses.NUM_TASKS, jnp.float32)
    if "decoder_inputs" in batch:
        logits = model.apply({"params": params}, batch["decoder_inputs"], memory, memory_valid,
                             mask=segment_mask(batch["decoder_segment_ids"]), positions_BxT=batch["decoder_positions"],
                             deterministic=not train, rngs=rngs, method=SoraModel.decode)
        token_loss = losses.token_losses(logits, batch["decoder_targets"]) * batch["decoder_mask"]
        sums = sums + losses.per_task(token_loss.sum(axis=1), batch["task_id"])
        if z_loss:
            token_z = losses.token_z_losses(logits, z_loss) * batch["decoder_mask"]
            z_sums = z_sums + losses.per_task(token_z.sum(axis=1), batch["task_id"])
        if with_accuracy:  # exact match of the whole target (e.g. a VQA answer)
            wrong = (jnp.argmax(logits, -1) != batch["decoder_targets"]) & (batch["decoder_mask"] > 0)
            exact = (~jnp.any(wrong, axis=1)) & (batch["decoder_mask"].sum(axis=1) > 0)
            correct = correct + losses.per_task(exact, batch["task_id"])
    if model.cfg.num_classes and pooled is not None:
        class_logits = model.apply({"params": params}, pooled, method=SoraModel.classify)
        labelled = losses.classified_rows(batch)
        ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, jnp.maximum(batch["label"], 0))
        sums = sums.at[losses.CLASSIFY].add(jnp.sum(jnp.where(labelled, ce, 0.0)))
        if with_accuracy:
            hit = labelled & (jnp.argmax(class_logits, -1) == batch["label"])
            correct = correct.at[losses.CLASSIFY].add(jnp.sum(hit.astype(jnp.float32)))
    out = {"loss": sums, "z": z_sums}
    return {**out, "correct": correct} if with_accuracy else out


def _split_microbatches(batch, k):
    """[B, ...] -> [k, B/k, ...] taking every k-th example, so every microbatch draws from every
    batch shard (a contiguous split would put a whole microbatch on a few devices)."""
    def split(x):
        return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)
    return jax.tree.map(split, batch)


def make_train_step(model: SoraModel, tx: optax.GradientTransformation, schedule, *, microbatches: int = 1,
                    z_loss: float = 0.0, task_weights=None, nonfinite: str = "skip", axis_name: str | None = None,
                    poison_steps=(), gan=None, text_loss: bool = True):
    """axis_name: set under pmap; counts, loss sums and gradients are then summed over it, so each
    device's update equals the one jit computes on the global batch.

    gan: a sora_jax.train.gan.GANParts; its rows of the batch then also train the generator and
    discriminator (after the text loss, on the whole batch, conditioned on the text encoder
    before this step's update). text_loss=False: the data has only GAN examples; the text
    parameters then change only by the discriminator's gradient under joint conditioning."""
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite policy must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    weights = jnp.asarray([1.0] * len(TASKS) if task_weights is None else task_weights, jnp.float32)
    gan_steps = None if gan is None else gan.make_step(axis_name)

    def all_sum(x):
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    def train_step(state: TrainState, batch, rng):
        if axis_name is not None:  # a different dropout draw on every device
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        denominators = all_sum(losses.loss_denominators(batch))
        scale = weights / jnp.maximum(denominators, 1.0)  # d(total)/d(task sum)

        def micro_loss(params, micro, micro_rng):
            out = _forward_sums(model, params, micro, micro_rng, z_loss=z_loss, train=True)
            # The objective includes the z-loss; the reported per-task losses are cross-entropy.
            return jnp.sum((out["loss"] + out["z"]) * scale), out["loss"]

        grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
        if not text_loss:
            loss, sums = jnp.zeros((), jnp.float32), jnp.zeros(losses.NUM_TASKS, jnp.float32)
            grads = jax.tree.map(jnp.zeros_like, state.params)
        elif microbatches == 1:
            (loss, sums), grads = grad_fn(state.params, batch, rng)
        else:
            def body(carry, xs):
                loss_acc, sums_acc, grads_acc = carry
                micro, i = xs
                (loss, sums), grads = grad_fn(state.params, micro, jax.random.fold_in(rng, i))
                grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
                return (loss_acc + loss, sums_acc + sums, grads_acc), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
            init = (jnp.zeros((), jnp.float32), jnp.zeros(losses.NUM_TASKS, jnp.float32), zeros)
            xs = (_split_microbatches(batch, microbatches), jnp.arange(microbatches))
            (loss, sums, grads), _ = jax.lax.scan(body, init, xs)

        new_gan, gan_metrics = state.gan, {}
        if gan is not None:
            sub = gan.select(batch)
            cond_fn = functools.partial(gan.condition, sub=sub)
            if gan.joint:
                cond, cond_vjp = jax.vjp(cond_fn, state.params)
            else:
                cond = cond_fn(state.params)
            new_gan, gan_metrics, cond_grad = gan_steps(state.gan, {**sub, "cond": cond}, jax.random.fold_in(rng, 7))
            if gan.joint:  # the text encoder takes the discriminator's gradient through the condition
                grads = jax.tree.map(jnp.add, grads, cond_vjp(cond_grad)[0])
            gan_metrics = {f"gan/{k}": v for k, v in gan_metrics.items()}
            gan_metrics["gan/examples"] = all_sum(jnp.sum(sub["weight"]))
        loss, sums, grads = all_sum(loss), all_sum(sums), all_sum(grads)
        if poison_steps:
            poisoned = jnp.isin(state.step + 1, jnp.asarray(poison_steps, jnp.int32))
            grads = jax.tree.map(lambda g: jnp.where(poisoned, jnp.nan, g), grads)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if gan is not None:
            finite = finite & jnp.isfinite(gan_metrics["gan/d_loss"]) & jnp.isfinite(gan_metrics["gan/g_loss"])
        if text_loss or (gan is not None and gan.joint):
            updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
            new_params = optax.apply_updates(state.params, updates)
        else:  # nothing trains the text side: no update (weight decay would still move it)
            new_params, new_opt_state = state.params, state.opt_state
        if nonfinite == "skip":  # keep the old parameters and optimizer states for this step
            keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
            new_params, new_opt_state = keep(new_params, state.params), keep(new_opt_state, state.opt_state)
            if gan is not None:
                new_gan = keep(new_gan, state.gan)
        new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt_state, gan=new_gan,
                                  nonfinite_skipped=state.nonfinite_skipped + (~finite).astype(jnp.int32))
        # A skipped step leaves the optimizer's own step count (and so its schedule) behind.
        applied = state.step - state.nonfinite_skipped
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(applied),
                   "finite": finite, "nonfinite_skipped": new_state.nonfinite_skipped,
                   "task_loss_sum": sums, "task_count": denominators,
                   "examples": all_sum(jnp.sum(batch["weight"])),
                   "data_skipped": all_sum(jnp.sum(batch["num_skipped"])), **gan_metrics}
        return new_state, metrics

    return train_step


def make_eval_step(model: SoraModel, *, axis_name: str | None = None):
    """(params, batch) -> per-task cross-entropy sums and counts, and correct-class counts (no
    z-loss: validation losses and perplexities are plain cross-entropy)."""
    def eval_step(params, batch):
        sums = _forward_sums(model, params, batch, jax.random.key(0), train=False, with_accuracy=True)
        out = {"task_loss_sum": sums["loss"], "correct": sums["correct"],
               "task_count": losses.loss_denominators(batch),
               "task_examples": losses.per_task(batch["weight"], batch["task_id"]),
               "examples": jnp.sum(batch["weight"]), "data_skipped": jnp.sum(batch["num_skipped"])}
        return out if axis_name is None else jax.lax.psum(out, axis_name)
    return eval_step
