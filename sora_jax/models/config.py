"""Typed, frozen model configuration, built from (and validated against) an experiment's ConfigDict.

`SoraConfig.from_dict(config.model)` turns the `model` section of an experiment config into
nested frozen dataclasses. Every problem raises `ConfigError` naming the key, e.g.
"model.decoder.num_heads: d_model 100 is not divisible by num_heads 3".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sora_jax.gan.config import GANConfig
from sora_jax.errors import ConfigError
from sora_jax.nn import grad_barrier
from sora_jax.nn.attention_core import IMPLEMENTATIONS
from sora_jax.nn.conv import ACTIVATIONS as CONV_ACTIVATIONS
from sora_jax.nn.mlp import ACTIVATIONS as MLP_ACTIVATIONS
from sora_jax.nn.norms import NORMS
from sora_jax.nn.positions import POSITIONS
from sora_jax.nn.stack import REMAT_POLICIES
from sora_jax.nn.transformer_block import LayerConfig

DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """What every Transformer stack (encoder, fusion, decoder) shares."""

    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    num_kv_heads: int = 0  # 0: same as num_heads; fewer: grouped-query attention
    head_dim: int = 0  # 0: d_model // num_heads
    mlp_dim: int = 256
    mlp_activation: str = "gelu"
    norm: str = "layernorm"
    norm_position: str = "pre"
    norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str = "explicit"
    chunk_size: int = 512
    use_bias: bool = True
    scan_layers: bool = True
    remat_policy: str = "none"
    scan_unroll: int = 1  # scanned stacks: layers per loop iteration (>= num_layers: no loop; same parameters)
    # The residual stream's gradient computed once per sublayer (nn/grad_barrier.py): "auto" (on for
    # one CPU device, where XLA otherwise recomputes it in every consumer), "on" or "off".
    residual_grad_barrier: str = "auto"

    @property
    def resolved_head_dim(self):
        return self.head_dim or self.d_model // self.num_heads

    def layer_config(self, dtype, param_dtype, use_rope=False, rope_max_wavelength=10_000.0):
        """The per-layer settings (same-named fields) plus what only the model knows."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(LayerConfig) if hasattr(self, f.name)}
        shared.update(head_dim=self.resolved_head_dim, num_kv_heads=self.num_kv_heads or None, use_rope=use_rope,
                      rope_max_wavelength=rope_max_wavelength, dtype=dtype, param_dtype=param_dtype)
        return LayerConfig(**shared)

    def validate(self, path):
        _positive(self, path, "num_layers", "d_model", "num_heads", "mlp_dim", "chunk_size", "scan_unroll")
        _choice(self, path, mlp_activation=MLP_ACTIVATIONS, norm=NORMS, norm_position=("pre", "post"),
                attention_impl=IMPLEMENTATIONS, remat_policy=tuple(REMAT_POLICIES),
                residual_grad_barrier=grad_barrier.MODES)
        if not self.head_dim and self.d_model % self.num_heads:
            raise ConfigError(f"{path}.num_heads: d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.num_kv_heads < 0 or (self.num_kv_heads and self.num_heads % self.num_kv_heads):
            raise ConfigError(f"{path}.num_kv_heads: num_heads {self.num_heads} is not a multiple of "
                              f"num_kv_heads {self.num_kv_heads}")
        for key in ("dropout_rate", "attention_dropout_rate"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{path}.{key}: must be in [0, 1), got {getattr(self, key)}")
        if self.attention_dropout_rate > 0 and self.attention_impl != "explicit":
            raise ConfigError(f"{path}.attention_dropout_rate: attention dropout needs attention_impl="
                              f"'explicit', not {self.attention_impl!r}")


@dataclasses.dataclass(frozen=True)
class TextTransformerConfig(TransformerConfig):
    """A Transformer over token ids: vocabulary, length and positional encoding."""

    vocab_size: int = 512
    max_len: int = 128
    position: str = "learned"
    rope_max_wavelength: float = 10_000.0
    # A Hugging Face folder (BERT for the encoder, GPT-2 for the decoder) whose weights the trainer
    # loads at init; its config.json then fixes the architecture fields (sora_jax/train/init_from.py).
    init_from: str = ""

    def validate(self, path):
        super().validate(path)
        _positive(self, path, "vocab_size", "max_len")
        _choice(self, path, position=POSITIONS)
        if self.position == "rope" and self.resolved_head_dim % 2:
            raise ConfigError(f"{path}.position: RoPE needs an even head_dim, got {self.resolved_head_dim}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"{path}.position: sinusoidal positions need an even d_model, got {self.d_model}")

    def text_layer_config(self, dtype, param_dtype):
        return self.layer_config(dtype, param_dtype, use_rope=self.position == "rope",
                                 rope_max_wavelength=self.rope_max_wavelength)


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig(TextTransformerConfig):
    pooling: str = "mean"  # TextEncoder's pooled output: "mean" over real tokens, or "cls" (first token)
    type_vocab_size: int = 0  # >0 adds BERT-style token-type embeddings
    embed_norm: bool = False  # BERT normalises the summed embeddings

    def validate(self, path):
        super().validate(path)
        _choice(self, path, pooling=("mean", "cls"))


@dataclasses.dataclass(frozen=True)
class TextDecoderConfig(TextTransformerConfig):
    tie_embeddings: bool = True
    cross_attention: bool = True  # False: a decoder-only language model


@dataclasses.dataclass(frozen=True)
class ImageEncoderConfig:
    image_size: int = 32
    in_channels: int = 3
    stem_features: int = 32
    stem_kernel: int = 3
    stem_stride: int = 1
    stage_features: tuple = (32, 64)
    blocks_per_stage: tuple = (1, 1)
    block: str = "basic"  # "basic" or "bottleneck" (output channels = features * 4)
    groups: int = 8
    activation: str = "relu"
    d_model: int = 64
    position: str = "sincos"  # "sincos" or "learned" 2-D positions

    @property
    def out_channels(self):
        return self.stage_features[-1] * (4 if self.block == "bottleneck" else 1)

    @property
    def grid_size(self):
        return self.image_size // (self.stem_stride * 2 ** (len(self.stage_features) - 1))

    def validate(self, path):
        _positive(self, path, "image_size", "in_channels", "stem_features", "stem_kernel", "stem_stride",
                  "groups", "d_model")
        _choice(self, path, block=("basic", "bottleneck"), activation=tuple(CONV_ACTIVATIONS),
                position=("sincos", "learned"))
        if not self.stage_features or len(self.stage_features) != len(self.blocks_per_stage):
            raise ConfigError(f"{path}.blocks_per_stage: needs one entry per stage_features entry "
                              f"({len(self.stage_features)}), got {len(self.blocks_per_stage)}")
        if any(b <= 0 for b in self.blocks_per_stage):
            raise ConfigError(f"{path}.blocks_per_stage: every stage needs at least one block")
        width_by_key = {"stem_features": [self.stem_features], "stage_features": list(self.stage_features)}
        for key, widths in width_by_key.items():
            for w in widths:
                if w % self.groups:
                    raise ConfigError(f"{path}.{key}: {w} channels are not divisible by groups {self.groups}")
        stride = self.stem_stride * 2 ** (len(self.stage_features) - 1)
        if self.image_size % stride:
            raise ConfigError(f"{path}.image_size: {self.image_size} is not divisible by the total stride {stride}")
        if self.position == "sincos" and self.d_model % 4:
            raise ConfigError(f"{path}.d_model: 2-D sincos positions need a multiple of 4, got {self.d_model}")


@dataclasses.dataclass(frozen=True)
class FusionConfig(TransformerConfig):
    mode: str = "joint"  # "joint" self-attention over both, or "cross" gated cross-attention

    def validate(self, path):
        super().validate(path)
        _choice(self, path, mode=("joint", "cross"))
        if self.mode == "cross" and self.norm_position != "pre":
            raise ConfigError(f"{path}.norm_position: gated cross-attention fusion is pre-norm only "
                              f"(its gates start at zero so the layer starts as the identity)")


@dataclasses.dataclass(frozen=True)
class SoraConfig:
    text_encoder: TextEncoderConfig = TextEncoderConfig()
    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    fusion: FusionConfig = FusionConfig()
    decoder: TextDecoderConfig = TextDecoderConfig()
    gan: GANConfig = GANConfig()  # the image generator (model.gan.enabled)
    num_classes: int = 0  # 0: no classification head
    # One token-embedding table for the text encoder and the decoder (T5's "shared"): the word
    # vectors the decoder learns by captioning are the ones questions are read with.
    share_text_embeddings: bool = False
    dtype: str = "float32"  # computation dtype
    param_dtype: str = "float32"

    def validate(self, path="model"):
        _choice(self, path, dtype=DTYPES, param_dtype=DTYPES)
        if self.num_classes < 0:
            raise ConfigError(f"{path}.num_classes: must be >= 0, got {self.num_classes}")
        if self.share_text_embeddings:
            self._check_shareable(path)
        for name in ("text_encoder", "image_encoder", "fusion", "decoder", "gan"):
            getattr(self, name).validate(f"{path}.{name}")
        return self

    def _check_shareable(self, path):
        enc, dec = self.text_encoder, self.decoder
        for field in ("vocab_size", "d_model"):
            if getattr(enc, field) != getattr(dec, field):
                raise ConfigError(f"{path}.share_text_embeddings: needs the same {field} in text_encoder "
                                  f"({getattr(enc, field)}) and decoder ({getattr(dec, field)})")
        for part in ("text_encoder", "decoder"):
            if getattr(self, part).init_from:
                raise ConfigError(f"{path}.share_text_embeddings: not with {path}.{part}.init_from "
                                  f"(a pretrained part brings its own embedding table)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: str = "model") -> "SoraConfig":
        """Build and validate from a (nested) mapping such as an ml_collections ConfigDict."""
        return _build(cls, values, path).validate(path)

    def to_dict(self):
        return dataclasses.asdict(self)


def _build(cls, values, path):
    if hasattr(values, "to_dict"):
        values = values.to_dict()
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{path}.{key}: unknown key; known keys are {', '.join(sorted(fields))}")
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{path}.{key}")
        else:
            kwargs[key] = _coerce(value, default, f"{path}.{key}")
    return cls(**kwargs)


def _coerce(value, default, path):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{path}: expected {type(default).__name__}, got {type(value).__name__} {value!r}")
    return value


def _positive(cfg, path, *keys):
    for key in keys:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{path}.{key}: must be positive, got {getattr(cfg, key)}")


def _choice(cfg, path, **choices):
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{path}.{key}: {getattr(cfg, key)!r} is not one of {', '.join(allowed)}")

