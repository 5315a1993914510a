"""Running a few train steps of the tiny model on synthetic multitask batches, on any mesh."""

import dataclasses

import jax
import ml_collections
import numpy as np
import optax

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


def batches(n, batch_size=8, seed=0, spec=SPEC, gan=False):
    """Synthetic batches with every text task, padding, absent images and labels (and with gan,
    text-to-image and inpainting rows too)."""
    rng = np.random.default_rng(seed)
    out = []
    names = ("caption", "vqa", "classify", "seq2seq", "lm") + (("t2i", "inpaint", "t2i") if gan else ())
    tasks = [TASKS.index(t) for t in names]
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
        if gan:
            b["inpaint_mask"] = (rng.random((batch_size, 16, 16, 1)) > 0.6).astype(np.float32)
        out.append(b)
    return out


def tiny_model(scan_layers: bool = True, dtype: str = "float32"):
    """The tiny preset with its layer stacks scanned or unrolled, computing in dtype."""
    cfg = presets.tiny()
    return dataclasses.replace(cfg, dtype=dtype, **{
        name: dataclasses.replace(getattr(cfg, name), scan_layers=scan_layers) for name in xla_cpu.STACKS})


def gan_parts(model, rows=0):
    """A small inpainting generator (which also serves t2i rows) with jointly trained text
    conditioning, spectral norm and R1 every step (no lax.cond: see sora_jax/train/xla_cpu.py),
    trained by SGD (Adam's sign-like first steps would magnify float reassociation)."""
    from sora_jax.gan import Discriminator, GANConfig, Generator
    from sora_jax.gan.step import GANTraining
    from sora_jax.train.gan import GANParts

    cfg = GANConfig(enabled=True, image_size=16, base_channels=8, max_channels=16, z_dim=8, w_dim=16, inpaint=True,
                    spectral_norm=True, text_conditioning="joint")
    model = SoraModel(dataclasses.replace(model.cfg, gan=cfg))
    training = GANTraining(r1_gamma=1.0, r1_every=1, augment="translation,color")
    return model, GANParts(model, Generator(cfg), Discriminator(cfg), optax.sgd(0.05), optax.sgd(0.05), training,
                           rows)


def run_steps(mesh_shape=(1, 1, 1), backend="jit", steps=3, microbatches=1, o=None, scan_layers=True,
              batch_size=8, gan=False, dtype="float32"):
    """(losses per step, final params as numpy) for the tiny model, set up as the trainer does.
    gan: the batches also have t2i / inpaint rows; the losses then add the GAN's, and the
    parameters include the generator's, the discriminator's and the EMA."""
    n = int(np.prod(mesh_shape))
    mesh = make_mesh(mesh_shape, jax.devices()[:n])
    model = SoraModel(xla_cpu.avoid_collective_deadlocks(tiny_model(scan_layers, dtype), mesh))
    parts = None
    if gan:
        model, parts = gan_parts(model)
    o = o or optim()
    tx = optimizer.make_optimizer(o, 100)
    schedule = optimizer.learning_rate_schedule(o, 100)
    be = make_backend(backend, model, tx, schedule, SPEC, mesh, DEFAULT_RULES,
                      dict(microbatches=microbatches, gan=parts))
    state = be.init(jax.random.key(0))
    losses = []
    for i, b in enumerate(batches(steps, batch_size, gan=gan)):
        state, metrics = be.step(state, be.put_batch(b), jax.random.key(100 + i))
        loss = float(metrics["loss"])
        if gan:
            loss += float(metrics["gan/d_loss"]) + float(metrics["gan/g_loss"]) + float(metrics["gan/hole_l1"])
        losses.append(loss)
    host = be.host_state(state)
    params = host.params if not gan else {"text": host.params, "g": host.gan.g_params, "d": host.gan.d_params,
                                          "ema": host.gan.ema_params, "u": host.gan.d_spectral}
    return losses, jax.tree.map(np.asarray, jax.device_get(params))


def max_abs_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
