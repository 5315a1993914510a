"""Parameter inspection: counts per model part."""

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
