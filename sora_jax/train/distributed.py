"""Joining JAX's multi-controller runtime (jax.distributed) when the run spans processes."""

from __future__ import annotations

import os

import jax

from sora_jax.train.errors import ConfigurationError

# Environment variables that mean "this process is one of several" (SLURM, Open MPI, TPU pods,
# JAX's own Kubernetes/JobSet support); jax.distributed.initialize() detects the rest itself.
_CLUSTER_HINTS = ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def _cluster_detected() -> bool:
    if any(os.environ.get(k) for k in _CLUSTER_HINTS):
        return True
    for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(key, "1") or 1) > 1:
            return True
    return False


def maybe_initialize(d) -> bool:
    """d: config.distributed. Returns True if jax.distributed was initialised."""
    if d.initialize not in ("auto", "yes", "no"):
        raise ConfigurationError(f"config key distributed.initialize: {d.initialize!r} is not one of auto, yes, no")
    explicit = bool(d.coordinator_address)
    if d.initialize == "no" or (d.initialize == "auto" and not explicit and not _cluster_detected()):
        return False
    kwargs = {}
    if explicit:
        if d.num_processes <= 0 or d.process_id < 0:
            raise ConfigurationError("config key distributed.coordinator_address: set with it "
                                     "distributed.num_processes and distributed.process_id")
        kwargs = dict(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                      process_id=d.process_id)
    # CPU devices of different processes talk through gloo (GPU and TPU runtimes ignore this).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs, initialization_timeout=int(d.get("initialization_timeout_s", 300)),
                               heartbeat_timeout_seconds=int(d.get("heartbeat_timeout_s", 100)))
    return True
