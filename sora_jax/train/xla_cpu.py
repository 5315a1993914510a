"""Settings that keep XLA:CPU's in-process collectives from deadlocking when one process drives
several CPU devices (fake devices in tests, or a CPU-only multi-device run)."""

from __future__ import annotations

import dataclasses
import logging

import jax

log = logging.getLogger(__name__)
STACKS = ("text_encoder", "fusion", "decoder")


def avoid_collective_deadlocks(model_cfg, mesh):
    """Returns model_cfg, adjusted for CPU runs with several devices in this process.

    XLA:CPU runs independent parts of a program concurrently. A scanned layer stack whose loop
    holds collectives (parameters sharded over fsdp or tensor) can then reach its collectives
    in a different order on different devices, and the rendezvous waits forever: about one
    run in four on a (2, 2, 2) mesh of fake devices. Unrolling the scan removes the loop (the
    parameters keep their stacked layout) and no run has hung since. One program in flight at
    a time, too: two sharded programs can otherwise starve each other of threads. GPUs and
    TPUs keep collectives in program order and are left alone."""
    if jax.default_backend() != "cpu" or jax.local_device_count() == 1:
        return model_cfg
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if mesh.shape["fsdp"] * mesh.shape["tensor"] == 1:
        return model_cfg  # data parallel only: no collectives inside the layer loop
    changes = {}
    for name in STACKS:
        part = getattr(model_cfg, name)
        if part.scan_layers and part.scan_unroll < part.num_layers:
            changes[name] = dataclasses.replace(part, scan_unroll=part.num_layers)
    if changes:
        log.info("XLA:CPU with %d devices and sharded layers: unrolling the layer scans of %s (same parameters; "
                 "avoids a collective deadlock)", jax.local_device_count(), ", ".join(changes))
    return dataclasses.replace(model_cfg, **changes)


def sync_every_step() -> bool:
    """Several CPU devices in one process: wait for each step before launching the next. With
    many steps in flight, one device's launch can wait on a slot that another device's step
    holds while it waits for the first at a collective (seen every time: 2 fake devices,
    data parallel, 200 steps queued). On CPU the wait costs nothing measurable."""
    return jax.default_backend() == "cpu" and jax.local_device_count() > 1
