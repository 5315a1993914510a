"""A stack of identical layers, either scanned (`nn.scan`: one compiled layer, parameters with a
leading "layers" axis) or unrolled (layer_0, layer_1, ...), optionally rematerialised."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

REMAT_POLICIES = {
    "none": None,  # no rematerialisation
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the whole layer
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class LayerStack(nn.Module):
    """Applies `num_layers` copies of `block` (a scan-shaped module, see TransformerBlock)."""

    block: Any
    cfg: Any
    num_layers: int
    scan_layers: bool = True
    remat_policy: str = "none"
    scan_unroll: int = 1  # layers per loop iteration; >= num_layers: no loop at all (same parameters)
    causal: bool = False
    cross_attention: bool = False
    max_cache_len: int = 0

    @nn.compact
    def __call__(self, x, mask=None, memory=None, memory_mask=None, positions=None, cache_index=None,
                 *, deterministic=True, decode=False):
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"unknown remat_policy {self.remat_policy!r}; choose one of {tuple(REMAT_POLICIES)}")
        block = self.block
        if self.remat_policy != "none":
            block = nn.remat(block, policy=REMAT_POLICIES[self.remat_policy], prevent_cse=not self.scan_layers)
        kwargs = dict(cfg=self.cfg, causal=self.causal, cross_attention=self.cross_attention,
                      max_cache_len=self.max_cache_len, deterministic=deterministic, decode=decode)
        args = (mask, memory, memory_mask, positions, cache_index)
        if self.scan_layers:
            scanned = nn.scan(
                block,
                variable_axes={"params": 0, "cache": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast,) * len(args),
                length=self.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
                unroll=True if self.scan_unroll >= self.num_layers else self.scan_unroll,
            )
            x, _ = scanned(name="layers", **kwargs)(x, *args)
            return x
        for i in range(self.num_layers):
            x, _ = block(name=f"layer_{i}", **kwargs)(x, *args)
        return x


def stack_layer_params(blocks):
    """{"layer_0": p0, "layer_1": p1, ...} -> {"layers": stacked} (unrolled -> scanned layout).
    Plain (unboxed) arrays; used to convert checkpoints and imported weights."""
    names = sorted((k for k in blocks if k.startswith("layer_")), key=lambda k: int(k.split("_")[1]))
    if not names or len(names) != len(blocks):
        raise ValueError(f"expected only layer_0..layer_N entries, got {sorted(blocks)}")
    return {"layers": jax.tree.map(lambda *xs: jnp.stack(xs), *(blocks[n] for n in names))}


def unstack_layer_params(blocks):
    """{"layers": stacked} -> {"layer_0": p0, ...} (scanned -> unrolled layout)."""
    stacked = blocks["layers"]
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    return {f"layer_{i}": jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(num_layers)}


def convert_layer_layout(params, scanned: bool):
    """Rewrites every layer stack in a parameter tree to the scanned or the unrolled layout."""
    if not isinstance(params, dict):
        return params
    keys = set(params)
    if scanned and keys and all(k.startswith("layer_") for k in keys):
        return stack_layer_params({k: convert_layer_layout(v, scanned) for k, v in params.items()})
    if not scanned and keys == {"layers"}:
        return {k: convert_layer_layout(v, scanned) for k, v in unstack_layer_params(params).items()}
    return {k: convert_layer_layout(v, scanned) for k, v in params.items()}
