"""The model configuration error (defined in `sora_jax.errors`; kept importable from here)."""

from sora_jax.errors import ConfigError

__all__ = ["ConfigError"]
