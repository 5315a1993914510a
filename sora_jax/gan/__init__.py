"""The GAN image generator of the Sora model: text-to-image and inpainting."""

from sora_jax.gan.config import GANConfig
from sora_jax.gan.discriminator import Discriminator, minibatch_std
from sora_jax.gan.generator import Generator, text_condition
from sora_jax.gan.judge import Judge, judge_features, judge_predict, train_judge
from sora_jax.gan.losses import (contrastive_loss, discriminator_loss, ema_update, generator_loss, hole_l1,
                                 r1_penalty)
from sora_jax.gan.metrics import conditional_accuracy, frechet_distance, hole_psnr

__all__ = ["GANConfig", "Discriminator", "minibatch_std", "Generator", "text_condition", "contrastive_loss",
           "discriminator_loss",
           "ema_update", "generator_loss", "hole_l1", "r1_penalty", "conditional_accuracy", "frechet_distance",
           "hole_psnr", "Judge", "judge_features", "judge_predict", "train_judge"]
