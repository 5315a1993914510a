"""Named model sizes. Experiment configs start from one (`config.model = presets.config_dict("tiny")`)
and override keys; tests and benchmarks use the same definitions."""

from __future__ import annotations

import dataclasses

import ml_collections

from sora_jax.models.config import (FusionConfig, ImageEncoderConfig, SoraConfig, TextDecoderConfig,
                                    TextEncoderConfig)


def tiny() -> SoraConfig:
    """About 60 thousand parameters: unit tests and CPU smoke runs."""
    layer = dict(num_layers=2, d_model=32, num_heads=4, mlp_dim=64)
    return SoraConfig(
        text_encoder=TextEncoderConfig(vocab_size=64, max_len=16, **layer),
        image_encoder=ImageEncoderConfig(image_size=16, stem_features=8, stage_features=(8, 16),
                                         blocks_per_stage=(1, 1), groups=4, d_model=32),
        fusion=FusionConfig(**{**layer, "num_layers": 1}),
        decoder=TextDecoderConfig(vocab_size=64, max_len=16, **layer),
        num_classes=4,
    )


def base() -> SoraConfig:
    """~300M parameters: BERT-base-sized encoder and decoder (12 layers, width 768, 12 heads),
    a ResNet-50 image encoder at 224 pixels (14x14 tokens), 4 joint fusion layers."""
    layer = dict(num_layers=12, d_model=768, num_heads=12, mlp_dim=3072, remat_policy="none")
    return SoraConfig(
        text_encoder=TextEncoderConfig(vocab_size=32_000, max_len=512, **layer),
        image_encoder=ImageEncoderConfig(image_size=224, stem_features=64, stem_kernel=7, stem_stride=2,
                                         stage_features=(64, 128, 256, 512), blocks_per_stage=(3, 4, 6, 3),
                                         block="bottleneck", groups=32, d_model=768),
        fusion=FusionConfig(**{**layer, "num_layers": 4}),
        decoder=TextDecoderConfig(vocab_size=32_000, max_len=512, **layer),
        num_classes=1000,
    )


PRESETS = {"tiny": tiny, "base": base}


def get(name: str) -> SoraConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]().validate()


def config_dict(name: str) -> ml_collections.ConfigDict:
    """The preset as a ConfigDict, ready to be the `model` section of an experiment config."""
    return ml_collections.ConfigDict(dataclasses.asdict(get(name)))
