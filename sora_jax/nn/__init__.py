"""Reusable layers. Every parameter carries logical axis names (see linear.logical)."""

from sora_jax.nn.attention import MultiHeadAttention
from sora_jax.nn.attention_core import IMPLEMENTATIONS, dot_product_attention, explicit_attention
from sora_jax.nn.chunked_attention import chunked_attention
from sora_jax.nn.gated_cross_block import GatedCrossBlock
from sora_jax.nn.conv import BottleneckBlock, Downsample, ResNetBlock, Upsample
from sora_jax.nn.linear import Embed, dense, logical
from sora_jax.nn.masks import causal_mask, combine_masks, key_padding_mask, padding_mask, segment_mask
from sora_jax.nn.mlp import MLP
from sora_jax.nn.norms import make_norm
from sora_jax.nn.positions import LearnedPositions, Learned2DPositions, apply_rope, sincos_2d, sinusoidal
from sora_jax.nn.stack import (REMAT_POLICIES, LayerStack, convert_layer_layout, stack_layer_params,
                               unstack_layer_params)
from sora_jax.nn.transformer_block import LayerConfig, TransformerBlock

__all__ = [
    "MultiHeadAttention", "IMPLEMENTATIONS", "dot_product_attention", "explicit_attention",
    "chunked_attention", "BottleneckBlock", "Downsample", "ResNetBlock", "Upsample", "Embed", "dense",
    "logical", "causal_mask", "combine_masks", "key_padding_mask", "padding_mask", "segment_mask", "MLP",
    "make_norm", "LearnedPositions", "Learned2DPositions", "apply_rope", "sincos_2d", "sinusoidal",
    "GatedCrossBlock", "REMAT_POLICIES", "LayerStack", "convert_layer_layout", "stack_layer_params", "unstack_layer_params", "LayerConfig", "TransformerBlock",
]
