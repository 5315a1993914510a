"""The image generator's settings (frozen and validated; errors name their key under model.gan)."""

from __future__ import annotations

import dataclasses

from sora_jax.gan.losses import LOSSES
from sora_jax.errors import ConfigError

TEXT_CONDITIONING = ("frozen", "joint")  # stop-gradient into the text encoder, or train it too


@dataclasses.dataclass(frozen=True)
class GANConfig:
    enabled: bool = False  # the Sora model has an image generator (t2i / inpaint tasks)
    image_size: int = 16  # a power of two, 8 .. 256
    channels: int = 3
    z_dim: int = 64
    w_dim: int = 128  # the mapping network's output: the style that modulates every block
    mapping_layers: int = 2
    base_channels: int = 32  # at the highest resolution; doubled per halving, up to max_channels
    max_channels: int = 256
    text_conditioning: str = "frozen"
    inpaint: bool = False  # the generator also takes (masked image, mask) through a U-Net encoder
    spectral_norm: bool = False  # on the discriminator's convolutions and dense layers
    minibatch_std: bool = True
    loss: str = "hinge"
    # Image-text contrastive heads on the discriminator (XMC-GAN, Zhang et al. 2021): each image's
    # features must pick its own caption among the batch's (0: none; trained when
    # gan.contrastive_weight > 0).
    contrastive_dim: int = 0

    @property
    def num_blocks(self) -> int:
        """Upsampling blocks from 4 x 4 to image_size."""
        return self.image_size.bit_length() - 3

    def channels_at(self, resolution: int) -> int:
        return min(self.base_channels * (self.image_size // resolution), self.max_channels)

    def validate(self, path: str = "model.gan") -> "GANConfig":
        size = self.image_size
        if size < 8 or size > 256 or size & (size - 1):
            raise ConfigError(f"{path}.image_size: must be a power of two from 8 to 256, got {size}")
        for key in ("channels", "z_dim", "w_dim", "mapping_layers", "base_channels", "max_channels"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{path}.{key}: must be positive, got {getattr(self, key)}")
        if self.contrastive_dim < 0:
            raise ConfigError(f"{path}.contrastive_dim: must be >= 0, got {self.contrastive_dim}")
        if self.text_conditioning not in TEXT_CONDITIONING:
            raise ConfigError(f"{path}.text_conditioning: must be one of {TEXT_CONDITIONING}, "
                              f"got {self.text_conditioning!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"{path}.loss: must be one of {LOSSES}, got {self.loss!r}")
        return self
