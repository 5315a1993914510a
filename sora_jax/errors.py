"""The configuration error of the model and the GAN. A top-level module with no imports, so that
`sora_jax.gan` and `sora_jax.models` can both use it whichever of them is imported first."""


class ConfigError(ValueError):
    """A model configuration value is wrong; the message starts with its full key."""
