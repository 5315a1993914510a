"""Logical axis names -> mesh axes, by rules kept in config (config.mesh.rules), and the
shardings of the train state and of batches derived from them."""

from __future__ import annotations

import contextlib
import logging
import math

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

# MaxText-style defaults: batch over data and fsdp, parameters' "embed" axis over fsdp,
# "heads" / "mlp" / "vocab" / conv channels over tensor, and the MLP's hidden activations over
# tensor like the weights that make them (replicated, they were all-gathered in every layer's
# forward and backward, and W_in gathered whole to compute them). Names not listed are replicated.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("activation_batch", ("data", "fsdp")),
    ("activation_mlp", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("conv_out", "tensor"),
)


def rules_from_config(rules) -> tuple:
    """Config stores rules as (logical name, mesh axis | tuple of axes | None) pairs."""
    out = []
    for rule in rules:
        name, axes = rule
        out.append((str(name), tuple(axes) if isinstance(axes, (list, tuple)) else axes))
    return tuple(out)


@contextlib.contextmanager
def sharding_context(mesh, rules):
    """Mesh and logical rules active while tracing, so activation constraints resolve."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def state_shardings(abstract_boxed_state, mesh, rules):
    """NamedShardings for every leaf of a state whose parameters are boxed with logical names;
    unboxed leaves (step counters, optimizer scalars) are replicated explicitly."""
    logical_specs = nn.get_partition_spec(abstract_boxed_state)
    shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
    return jax.tree.map(_even, nn.unbox(abstract_boxed_state), shardings)


def _even(leaf, sharding):
    """The sharding with every mesh axis that does not divide its dimension dropped (that
    dimension replicated). Imported checkpoints bring sizes such as GPT-2's 50257-token vocabulary,
    which no even split fits; the rest of the array stays sharded."""
    if not isinstance(sharding, NamedSharding) or not hasattr(leaf, "shape"):
        return sharding
    spec, changed = list(sharding.spec) + [None] * (len(leaf.shape) - len(sharding.spec)), False
    for dim, axes in enumerate(spec[:len(leaf.shape)]):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        ways = math.prod(sharding.mesh.shape[a] for a in names)
        if ways > 1 and leaf.shape[dim] % ways:
            spec[dim], changed = None, True
            _warn_once(f"a dimension of size {leaf.shape[dim]} (shape {tuple(leaf.shape)}) does not divide over "
                       f"mesh axes {names} ({ways} ways): replicated along it instead")
    return NamedSharding(sharding.mesh, P(*spec[:len(leaf.shape)])) if changed else sharding


_warned: set = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def batch_sharding(mesh, rules) -> NamedSharding:
    """Leading (example) axis over the mesh axes that "batch" maps to; the rest replicated."""
    axes = dict(rules).get("batch")
    return NamedSharding(mesh, P(axes))


def batch_shardings(batch_structure, mesh, rules):
    sharding = batch_sharding(mesh, rules)
    return jax.tree.map(lambda _: sharding, batch_structure)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_divisible(batch_size: int, mesh, rules, key="data.batch_size"):
    from sora_jax.train.errors import ConfigurationError

    axes = dict(rules).get("batch") or ()
    axes = (axes,) if isinstance(axes, str) else axes
    ways = 1
    for a in axes:
        ways *= mesh.shape[a]
    if batch_size % ways:
        raise ConfigurationError(f"config key {key}: {batch_size} is not divisible by the {ways} batch shards "
                                 f"of mesh {dict(mesh.shape)}")
