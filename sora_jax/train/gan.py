"""The GAN task family in the trainer: which rows of a batch are image-generation examples, the
text condition they get from the Sora text encoder, and the generator and discriminator with
their own optimizers (settings under config.gan; architecture under config.model.gan).

t2i rows and inpaint rows share one generator: an inpainting generator given no known pixels
(known = 0 everywhere) is a text-to-image generator.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from sora_jax.data.schema import TASKS
from sora_jax.gan import Discriminator, Generator, text_condition
from sora_jax.gan.step import GANState, GANTraining, make_gan_step
from sora_jax.models.sora import SoraModel
from sora_jax.train.errors import ConfigurationError

GAN_TASKS = ("t2i", "inpaint")
T2I, INPAINT = TASKS.index("t2i"), TASKS.index("inpaint")


R1_SCHEDULES = ("auto", "lazy", "split")
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(peak, schedule, num_steps):
    """constant, or a cosine decay from peak to 0 over the run (counted in GAN updates)."""
    return peak if schedule == "constant" else optax.cosine_decay_schedule(peak, max(num_steps, 1))


def training_settings(g) -> GANTraining:
    # auto: split on CPU (see GANTraining.r1_split), lazy where conditionals are cheap.
    split = g.r1_schedule == "split" or (g.r1_schedule == "auto" and jax.default_backend() == "cpu")
    return GANTraining(r1_gamma=g.r1_gamma, r1_every=g.r1_every, r1_split=split, l1_weight=g.l1_weight,
                       augment=g.augment, ema_decay=g.ema_decay, mismatch_weight=g.mismatch_weight,
                       mode_seeking=g.mode_seeking, contrastive_weight=g.contrastive_weight)


@dataclasses.dataclass(frozen=True)
class GANParts:
    """Everything the train step needs for the GAN rows of a batch."""

    model: SoraModel
    generator: Generator
    discriminator: Discriminator
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    training: GANTraining
    rows: int  # GAN rows taken from each batch (0: all of them)

    @property
    def cfg(self):
        return self.generator.cfg

    @property
    def joint(self) -> bool:
        return self.cfg.text_conditioning == "joint"

    @property
    def cond_dim(self) -> int:
        return 2 * self.model.cfg.text_encoder.d_model  # pooled + mean of the token states

    def init_state(self, rng) -> GANState:
        """Boxed (logically named) generator and discriminator parameters and their optimizer states."""
        cfg, size = self.cfg, self.cfg.image_size
        kg, kd = jax.random.split(rng)
        image = jnp.zeros((2, size, size, cfg.channels), jnp.float32)
        known = jnp.zeros((2, size, size, 1), jnp.float32)
        cond = jnp.zeros((2, self.cond_dim), jnp.float32)
        g_vars = self.generator.init(kg, jnp.zeros((2, cfg.z_dim)), cond, image, known)
        d_vars = self.discriminator.init(kd, image, cond, known if cfg.inpaint else None)
        return GANState.create(g_vars["params"], d_vars, self.g_tx, self.d_tx)

    def select(self, batch) -> dict:
        """The GAN rows of a mixed batch, as a fixed-size sub-batch with a 0/1 "weight" per row.
        rows > 0 gathers that many (GAN rows first; rows beyond it in a batch are not trained)."""
        task = batch["task_id"]
        is_gan = ((task == T2I) | (task == INPAINT)) & (batch["weight"] > 0)
        keys = ("image", "text", "text_valid", "inpaint_mask", "task_id")
        sub = {k: batch[k] for k in keys}
        weight = is_gan.astype(jnp.float32)
        if self.rows and self.rows < task.shape[0]:
            order = jnp.argsort(jnp.where(is_gan, 0, 1), stable=True)[:self.rows]
            sub = {k: v[order] for k, v in sub.items()}
            weight = weight[order]
        inpaint = (sub["task_id"] == INPAINT).astype(jnp.float32)[:, None, None, None]
        known = inpaint * (1.0 - sub["inpaint_mask"])  # t2i rows: nothing is known
        return {"image": sub["image"], "text": sub["text"], "text_valid": sub["text_valid"], "known": known,
                "weight": weight}

    def condition(self, params, sub, deterministic=True):
        states, pooled = self.model.apply({"params": params}, sub["text"], sub["text_valid"],
                                          deterministic=deterministic, method=SoraModel.encode_text)
        return text_condition(self.cfg, pooled, states, sub["text_valid"])

    def make_step(self, axis_name=None):
        return make_gan_step(self.generator, self.discriminator, self.g_tx, self.d_tx, self.training,
                             axis_name=axis_name, with_cond_grad=True)

    def sample(self, ema_params, z, cond, masked_image=None, known=None):
        """Images from the EMA generator (known / masked_image: inpainting; None for t2i)."""
        if self.cfg.inpaint:
            if known is None:
                known = jnp.zeros(z.shape[:1] + (self.cfg.image_size, self.cfg.image_size, 1), jnp.float32)
                masked_image = jnp.zeros(known.shape[:3] + (self.cfg.channels,), jnp.float32)
            return self.generator.apply({"params": ema_params}, z, cond, masked_image * known, known)
        return self.generator.apply({"params": ema_params}, z, cond)


def make_gan_parts(config, model: SoraModel, tasks) -> GANParts | None:
    """None when the model has no generator; errors when the data and the generator disagree."""
    cfg = model.cfg.gan
    wanted = sorted(set(tasks) & set(GAN_TASKS))
    if not cfg.enabled:
        if wanted:
            raise ConfigurationError(f"config key model.gan.enabled: the data has {', '.join(wanted)} examples "
                                     f"but the model has no image generator")
        return None
    if not wanted:
        raise ConfigurationError("config key model.gan.enabled: the model has an image generator but the data "
                                 "has no t2i or inpaint examples to train it")
    if "inpaint" in wanted and not cfg.inpaint:
        raise ConfigurationError("config key model.gan.inpaint: the data has inpaint examples; the generator "
                                 "needs inpaint=True (it then also serves t2i)")
    d = config.data
    if d.image_size != cfg.image_size or d.channels != cfg.channels:
        raise ConfigurationError(f"config key model.gan.image_size: the generator makes {cfg.image_size}px "
                                 f"{cfg.channels}-channel images, the data has {d.image_size}px {d.channels}-channel")
    if not d.text_len:
        raise ConfigurationError("config key data.text_len: the image generator is conditioned on text; it "
                                 "must be > 0")
    g = config.gan
    if g.rows < 0 or g.rows > d.batch_size:
        raise ConfigurationError(f"config key gan.rows: must be in [0, data.batch_size={d.batch_size}], got {g.rows}")
    if g.r1_every <= 0:
        raise ConfigurationError(f"config key gan.r1_every: must be positive, got {g.r1_every}")
    if g.contrastive_weight < 0 or (g.contrastive_weight > 0 and not cfg.contrastive_dim):
        raise ConfigurationError(f"config key gan.contrastive_weight: must be >= 0, and > 0 only with "
                                 f"model.gan.contrastive_dim > 0 (got {g.contrastive_weight}, "
                                 f"contrastive_dim {cfg.contrastive_dim})")
    if g.r1_schedule not in R1_SCHEDULES:
        raise ConfigurationError(f"config key gan.r1_schedule: must be one of {R1_SCHEDULES}, got {g.r1_schedule!r}")
    if g.lr_schedule not in LR_SCHEDULES:
        raise ConfigurationError(f"config key gan.lr_schedule: must be one of {LR_SCHEDULES}, got {g.lr_schedule!r}")
    g_tx = optax.adam(learning_rate(g.g_learning_rate, g.lr_schedule, config.train.num_steps), b1=g.b1, b2=g.b2)
    d_tx = optax.adam(learning_rate(g.d_learning_rate, g.lr_schedule, config.train.num_steps), b1=g.b1, b2=g.b2)
    return GANParts(model, Generator(cfg), Discriminator(cfg), g_tx, d_tx, training_settings(g), int(g.rows))
