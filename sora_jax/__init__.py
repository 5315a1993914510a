"""sora_jax: the Sora multimodal model (text encoder, image encoder, fusion, text decoder,
GAN image generator) in JAX/Flax, with a sharded trainer."""

__version__ = "0.1.0"
