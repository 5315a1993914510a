"""The model configuration error (its own module so that the GAN config can use it too)."""


class ConfigError(ValueError):
    """A model configuration value is wrong; the message starts with its full key."""
