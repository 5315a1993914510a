"""Running a few train steps of the tiny model on synthetic multitask batches, on any mesh."""

import dataclasses

import jax
import ml_collections
import numpy as np

from sora_jax.data.schema import TASKS, ExampleSpec
from sora_jax.models import SoraModel, presets
from sora_jax.train import optimizer, xla_cpu
from sora_jax.train.backends import make_backend
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES

SPEC = ExampleSpec(text_len=8, decoder_len=8, image_size=16)


def optim(name="sgd", lr=0.1, **kw):
    o = dict(name=name, learning_rate=lr, warmup_steps=0, schedule="constant", end_lr_fraction=1.0,
             weight_decay=0.0, b1=0.0, b2=0.99, eps=1e-8, clip_norm=0.0)
    o.update(kw)
    return ml_collections.ConfigDict(o)


def batches(n, batch_size=8, seed=0, spec=SPEC):
    """Synthetic batches with every text task, padding, absent images and labels."""
    rng = np.random.default_rng(seed)
    out = []
    tasks = [TASKS.index(t) for t in ("caption", "vqa", "classify", "seq2seq", "lm")]
    for _ in range(n):
        b = {k: np.zeros((batch_size,) + shape, dt) for k, (shape, dt) in spec.fields().items()}
        b["task_id"] = rng.choice(tasks, batch_size).astype(np.int32)
        b["text"] = rng.integers(1, 64, (batch_size, spec.text_len)).astype(np.int32)
        b["text_valid"] = np.arange(spec.text_len)[None] < rng.integers(1, spec.text_len + 1, (batch_size, 1))
        b["text_valid"][b["task_id"] == TASKS.index("lm")] = False
        b["image"] = rng.uniform(-1, 1, (batch_size, 16, 16, 3)).astype(np.float32)
        b["image_present"] = rng.random(batch_size) < 0.7
        b["decoder_inputs"] = rng.integers(1, 64, (batch_size, spec.decoder_len)).astype(np.int32)
        b["decoder_targets"] = rng.integers(1, 64, (batch_size, spec.decoder_len)).astype(np.int32)
        lengths = rng.integers(2, spec.decoder_len + 1, (batch_size, 1))
        real = np.arange(spec.decoder_len)[None] < lengths
        b["decoder_mask"] = real.astype(np.float32)
        b["decoder_segment_ids"] = real.astype(np.int32)
        b["decoder_positions"] = np.where(real, np.arange(spec.decoder_len)[None], 0).astype(np.int32)
        classify = b["task_id"] == TASKS.index("classify")
        b["decoder_mask"][classify] = 0
        b["label"] = np.where(classify, rng.integers(0, 4, batch_size), -1).astype(np.int32)
        b["weight"][:] = 1
        out.append(b)
    return out


def tiny_model(scan_layers: bool = True):
    """The tiny preset with its layer stacks scanned or unrolled."""
    cfg = presets.tiny()
    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), scan_layers=scan_layers)
                                       for name in xla_cpu.STACKS})


def run_steps(mesh_shape=(1, 1, 1), backend="jit", steps=3, microbatches=1, o=None, scan_layers=True,
              batch_size=8):
    """(losses per step, final params as numpy) for the tiny model, set up as the trainer does."""
    n = int(np.prod(mesh_shape))
    mesh = make_mesh(mesh_shape, jax.devices()[:n])
    model = SoraModel(xla_cpu.avoid_collective_deadlocks(tiny_model(scan_layers), mesh))
    o = o or optim()
    tx = optimizer.make_optimizer(o, 100)
    schedule = optimizer.learning_rate_schedule(o, 100)
    be = make_backend(backend, model, tx, schedule, SPEC, mesh, DEFAULT_RULES, dict(microbatches=microbatches))
    state = be.init(jax.random.key(0))
    losses = []
    for i, b in enumerate(batches(steps, batch_size)):
        state, metrics = be.step(state, be.put_batch(b), jax.random.key(100 + i))
        losses.append(float(metrics["loss"]))
    return losses, jax.tree.map(np.asarray, jax.device_get(be.host_state(state).params))


def max_abs_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
