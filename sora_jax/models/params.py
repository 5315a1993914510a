"""Parameter inspection: counts per model part, and the model FLOPs they imply."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


def count_parameters(params) -> dict[str, int]:
    """Number of scalars per top-level part (text_encoder, image_encoder, ...) and in total.
    Accepts boxed (logically partitioned) or plain parameter trees, real or abstract."""
    params = nn.meta.unbox(params)
    counts = {name: int(sum(np.prod(x.shape) for x in jax.tree.leaves(sub))) for name, sub in params.items()}
    counts["total"] = sum(counts.values())
    return counts


def model_flops_per_token(params, decoder, decoder_len: int) -> float:
    """Training FLOPs per target token by the PaLM / nanoGPT count (what benchmarks/train_step.py
    reports): 6 N (forward + backward, N = parameters outside embedding tables) plus the attention
    scores and weighted sums, 12 * layers * attention width * decoder sequence length."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    n = sum(np.prod(x.shape) for path, x in leaves if "embedding" not in jax.tree_util.keystr(path))
    attention = 12 * decoder.num_layers * decoder.num_heads * decoder.resolved_head_dim * decoder_len
    return 6.0 * float(n) + float(attention)
