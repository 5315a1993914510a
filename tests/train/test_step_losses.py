"""The text train step's losses: z-loss is trained on but never reported as cross-entropy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sora_jax.data.schema import TASKS
from sora_jax.models import SoraModel
from sora_jax.train import losses
from sora_jax.train.init import create_state
from sora_jax.train.mesh import make_mesh
from sora_jax.train.step import make_eval_step, make_train_step
from tests.train.helpers import SPEC, batches, tiny_model


def test_token_losses_against_numpy():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3, rng.integers(0, 7, (2, 5))
    lse = np.log(np.exp(logits).sum(-1))
    ce = lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses.token_losses(jnp.asarray(logits), jnp.asarray(targets)), ce, rtol=1e-5)
    np.testing.assert_allclose(losses.token_z_losses(jnp.asarray(logits), 0.25), 0.25 * lse ** 2, rtol=1e-5)


def test_z_loss_moves_the_objective_and_the_update_but_not_the_reported_cross_entropy():
    model = SoraModel(tiny_model())
    tx = optax.sgd(0.1)
    state, _ = create_state(model, tx, SPEC, make_mesh((1, 1, 1), jax.devices()[:1]), (), jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, batches(1)[0])
    schedule = lambda step: 0.1  # noqa: E731
    plain_state, plain = jax.jit(make_train_step(model, tx, schedule))(state, batch, jax.random.key(1))
    z_state, with_z = jax.jit(make_train_step(model, tx, schedule, z_loss=1e-2))(state, batch, jax.random.key(1))

    np.testing.assert_array_equal(with_z["task_loss_sum"], plain["task_loss_sum"])
    decoder_tasks = [TASKS.index(t) for t in ("caption", "vqa", "seq2seq", "lm")]
    assert float(np.sum(np.asarray(plain["task_count"])[decoder_tasks])) > 0
    # Every decoder token adds 1e-2 * logsumexp^2 > 0 to the objective, weighted per task.
    assert float(with_z["loss"]) > float(plain["loss"])
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(z_state.params),
                                                         jax.tree.leaves(plain_state.params))]
    assert max(moved) > 0

    evaluated = jax.jit(make_eval_step(model))(state.params, batch)
    np.testing.assert_allclose(evaluated["task_loss_sum"], plain["task_loss_sum"], rtol=1e-6)


def test_after_a_skipped_step_the_logged_learning_rate_is_the_one_the_optimizer_applies():
    from sora_jax.train import optimizer
    from tests.train.helpers import optim
    model = SoraModel(tiny_model())
    o = optim("adamw", lr=1e-2, warmup_steps=4, schedule="linear", end_lr_fraction=0.0)
    tx, schedule = optimizer.make_optimizer(o, 10), optimizer.learning_rate_schedule(o, 10)
    state, _ = create_state(model, tx, SPEC, make_mesh((1, 1, 1), jax.devices()[:1]), (), jax.random.key(0))
    step = jax.jit(make_train_step(model, tx, schedule, poison_steps=(1,)))
    logged = []
    for i, b in enumerate(batches(3)):
        state, metrics = step(state, jax.tree.map(jnp.asarray, b), jax.random.key(i))
        logged.append(float(metrics["learning_rate"]))
    counts = {int(c) for _, c in optax.tree_utils.tree_get_all_with_path(state.opt_state, "count")}
    assert int(state.nonfinite_skipped) == 1 and counts == {2}  # two updates applied in three steps
    # The skipped step and the first applied one both use the schedule's first value.
    np.testing.assert_allclose(logged, [float(schedule(0)), float(schedule(0)), float(schedule(1))])
