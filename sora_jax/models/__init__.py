"""The Sora model parts and their typed configuration."""

from sora_jax.models.config import (ConfigError, FusionConfig, ImageEncoderConfig, SoraConfig,
                                    TextDecoderConfig, TextEncoderConfig, TransformerConfig)
from sora_jax.models.fusion import Fusion
from sora_jax.models.image_encoder import ImageEncoder
from sora_jax.models.params import count_parameters
from sora_jax.models.sora import Encoded, SoraModel
from sora_jax.models.text_decoder import TextDecoder
from sora_jax.models.text_encoder import TextEncoder

__all__ = [
    "ConfigError", "FusionConfig", "ImageEncoderConfig", "SoraConfig", "TextDecoderConfig",
    "TextEncoderConfig", "TransformerConfig", "Fusion", "ImageEncoder", "count_parameters", "Encoded",
    "SoraModel", "TextDecoder", "TextEncoder",
]
