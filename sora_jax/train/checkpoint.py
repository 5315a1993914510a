"""Orbax checkpoints: the train state, each process's data-iterator position, and a JSON item
with the resolved config and the tokenizer, in one step folder under DIR/checkpoints/.

Saves are asynchronous (the state is copied off the devices, then written in the background)
and finalised atomically: Orbax writes to a temporary folder and renames it, so a crash leaves
either a complete checkpoint or none. A newest checkpoint that fails to restore (truncated or
corrupt files) is reported and the one before it is used.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time

import grain
import jax
import orbax.checkpoint as ocp
# The store orbax's default jax.Array handler keeps per-array metadata in (not exported publicly).
from orbax.checkpoint._src.metadata import array_metadata_store

from sora_jax.data.tokenizers import load_tokenizer
from sora_jax.data.tokenizers.base import CONFIG_FILE

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoints"
DATA_STATE = "data_iterator"  # the meta item's key for a shared iterator position


def tokenizer_record(tokenizer) -> dict:
    """The tokenizer as JSON: its config and its files (base64), so a checkpoint can decode by itself."""
    with tempfile.TemporaryDirectory() as d:
        tokenizer.save(d)
        files = {}
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                files[name] = base64.b64encode(f.read()).decode("ascii")
    return {"kind": tokenizer.kind, "files": files}


def tokenizer_from_record(record: dict, directory: str):
    """Writes the tokenizer files into `directory` and loads them."""
    os.makedirs(directory, exist_ok=True)
    for name, data in record["files"].items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(base64.b64decode(data))
    if not os.path.exists(os.path.join(directory, CONFIG_FILE)):
        raise ValueError(f"checkpoint tokenizer has no {CONFIG_FILE}")
    return load_tokenizer(directory)


class CheckpointMismatch(ValueError):
    """The workdir's checkpoints do not fit this run (exit code 2: nothing is overwritten)."""


# Replica-parallel saving lets each replica of a replicated array write one slice of it, so that
# several hosts share the writing. Within one process it saves nothing and costs a sliced copy, and
# a compiled slice program per array shape, for every replica of every array: a 4-device state of
# 600 small replicated arrays blocked its first save for 36 s (0.4 s without; later saves 0.5-0.7 s
# against 0.1 s). So it is used only across processes, and only for slices of at least this size.
MIN_REPLICA_SLICE_BYTES = 1 << 20


class _StateHandler(ocp.StandardCheckpointHandler):
    """Orbax's StandardCheckpointHandler (same files, same args) over a type-handler registry of
    our own, whose jax.Array handler uses replica-parallel saving only across processes."""

    def __init__(self, replica_parallel: bool):
        super().__init__()
        arrays = ocp.type_handlers.ArrayHandler(
            use_replica_parallel=replica_parallel, min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
            array_metadata_store=array_metadata_store.Store())
        registry = ocp.type_handlers.create_type_handler_registry(
            *[(t, ocp.type_handlers.get_type_handler(t)) for t in ocp.type_handlers.supported_types()],
            (jax.Array, arrays))  # later entries override earlier ones
        self._impl = ocp.PyTreeCheckpointHandler(save_concurrent_gb=96, restore_concurrent_gb=96, use_ocdbt=True,
                                                 type_handler_registry=registry)


def _handler_registry(replica_parallel: bool):
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    state = _StateHandler(replica_parallel)
    registry.add("state", ocp.args.StandardSave, state)
    registry.add("state", ocp.args.StandardRestore, state)
    data = grain.checkpoint.CheckpointHandler()
    registry.add("data", grain.checkpoint.CheckpointSave, data)
    registry.add("data", grain.checkpoint.CheckpointRestore, data)
    meta = ocp.handlers.JsonCheckpointHandler()
    registry.add("meta", ocp.args.JsonSave, meta)
    registry.add("meta", ocp.args.JsonRestore, meta)
    return registry


class Checkpointer:
    def __init__(self, workdir: str, *, keep: int = 3, keep_every: int = 0, async_save: bool = True,
                 shared_iterator: bool = False, replica_parallel: bool | None = None):
        """shared_iterator: every process's data iterator is in the same state (data.process_layout
        "global"), so it is saved once, in the JSON item, and restores under any process count;
        otherwise each process saves its own position (restorable with the same process count).
        replica_parallel: replicated arrays' slices of >= MIN_REPLICA_SLICE_BYTES are written by
        their replicas together (None: exactly when there are several processes)."""
        self.shared_iterator = shared_iterator
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep or None, keep_period=keep_every or None, enable_async_checkpointing=async_save,
            create=True, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             handler_registry=_handler_registry(
                                                 jax.process_count() > 1 if replica_parallel is None else replica_parallel))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, iterator, meta: dict, *, force: bool = False) -> bool:
        if self.shared_iterator:
            args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave({**meta, DATA_STATE: iterator.get_state()}))
        else:
            args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=grain.checkpoint.CheckpointSave(iterator),
                                      meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args, force=force)

    def restore_latest(self, abstract_state, iterator):
        """(step, state, meta) from the newest checkpoint that restores, or None if there is none.
        The iterator is positioned in place. abstract_state carries the target shardings, so a
        checkpoint written on another mesh is resharded on the way in."""
        unreadable, first_error = [], None
        for step in reversed(self.steps()):
            try:
                items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
                if not self.shared_iterator:
                    items["data"] = grain.checkpoint.CheckpointRestore(iterator)
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
                if self.shared_iterator:
                    if DATA_STATE not in restored.meta:
                        raise KeyError(f"no shared data position ({DATA_STATE}) in the checkpoint's meta item "
                                       f"(written with data.process_layout=per_process?)")
                    iterator.set_state(restored.meta[DATA_STATE])
            except Exception as e:  # noqa: BLE001 - any failure means: try the previous one
                reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
                log.warning("checkpoint at step %d in %s could not be restored (%s); trying the previous one",
                            step, self.directory, reason)
                unreadable.append(step)
                first_error = first_error or reason
                continue
            self._set_aside(unreadable)
            return step, restored.state, restored.meta
        if unreadable:
            # Not one restores: more likely a run that does not match them (another model or data
            # layout) than all of them corrupt. Starting from scratch would bury them: refuse.
            raise CheckpointMismatch(f"none of the checkpoints in {self.directory} (steps "
                                     f"{', '.join(map(str, sorted(unreadable)))}) can be restored into this run; "
                                     f"the newest failed with {first_error}. Use the config they were written with "
                                     f"(--config=configs/from_run.py:{os.path.dirname(self.directory)}/config.json) "
                                     f"or a new workdir")
        return None

    def _set_aside(self, steps):
        """Moves unreadable checkpoints out of the way (never deletes them), so training can write
        those steps again."""
        if steps and jax.process_index() == 0:
            aside = self.directory + ".unreadable"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target = os.path.join(aside, f"{step}-{int(time.time())}")
                os.rename(os.path.join(self.directory, str(step)), target)
                log.warning("moved unreadable checkpoint %d to %s", step, target)
        self._sync("set_aside")
        if steps:
            self.manager.reload()

    def _sync(self, name):
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"sora_jax_checkpoint_{name}")

    def restore_state(self, step: int, abstract_state):
        """The state alone (no data iterator), e.g. for sampling from a finished run."""
        return self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state))).state

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def describe_devices() -> dict:
    return {"process_count": jax.process_count(), "device_count": jax.device_count()}
