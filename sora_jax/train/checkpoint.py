"""Orbax checkpoints: the train state, each process's data-iterator position, and a JSON item
with the resolved config and the tokenizer, in one step folder under DIR/checkpoints/.

Saves are asynchronous (the state is copied off the devices, then written in the background)
and finalised atomically: Orbax writes to a temporary folder and renames it, so a crash leaves
either a complete checkpoint or none. A newest checkpoint that fails to restore (truncated or
corrupt files) is reported and the one before it is used.
"""

from __future__ import annotations

import base64
import contextlib
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
from sora_jax.train import restore_noise

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
                 shared_iterator: bool = False, replica_parallel: bool | None = None, read_only: bool = False):
        """shared_iterator: every process's data iterator is in the same state (data.process_layout
        "global"), so it is saved once, in the JSON item, and restores under any process count;
        otherwise each process saves its own position (restorable with the same process count).
        replica_parallel: replicated arrays' slices of >= MIN_REPLICA_SLICE_BYTES are written by
        their replicas together (None: exactly when there are several processes).
        read_only: for readers of a run (generate, evaluate, export): nothing is written or removed,
        not even the unfinished temporary folders of saves, which a trainer may be writing now."""
        self.shared_iterator = shared_iterator
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        writes = not read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=(keep or None) if writes else None, keep_period=(keep_every or None) if writes else None,
            enable_async_checkpointing=async_save, create=writes, cleanup_tmp_directories=writes)
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

    def check_fits(self, abstract_state):
        """CheckpointMismatch (one line) if the newest checkpoint's arrays, read from its metadata
        alone, are not this run's: another model or optimizer in the workdir. Checked before any
        array is read, as restoring them would fail only part-way through."""
        for step in reversed(self.steps()):
            try:
                stored = _leaf_specs(self.manager.item_metadata(step)["state"])
            except Exception:  # noqa: BLE001 - unreadable metadata: restore_latest reports it
                continue
            difference = _first_difference(stored, _leaf_specs(abstract_state))
            if difference:
                raise CheckpointMismatch(f"the checkpoint at step {step} in {self.directory} does not fit this run: "
                                         f"{difference}. {self._advice()}")
            return

    def _advice(self) -> str:
        return (f"Use the config it was written with (--config=configs/from_run.py:"
                f"{os.path.dirname(self.directory)}/config.json) or a new workdir")

    def restore_latest(self, abstract_state, iterator):
        """(step, state, meta) from the newest checkpoint that restores, or None if there is none.
        The iterator is positioned in place. abstract_state carries the target shardings, so a
        checkpoint written on another mesh is resharded on the way in."""
        failed, restored = [], None
        steps = list(reversed(self.steps()))
        # A failed attempt's leftover reads print tracebacks from the moment it fails: held back from
        # the first attempt on (only when there is a checkpoint to restore).
        with restore_noise.held_back(lambda: bool(failed)) if steps else contextlib.nullcontext():
            for step in steps:
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
                    restored = step, restored
                    break
                except Exception as e:  # noqa: BLE001 - any failure means: try the previous one
                    failed.append((step, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"))
                    restored = None
        if restored is None and failed:
            # Not one restores: more likely a run that does not match them (another model or data
            # layout) than all of them corrupt. Starting from scratch would bury them: refuse.
            raise CheckpointMismatch(f"none of the checkpoints in {self.directory} (steps "
                                     f"{', '.join(str(step) for step, _ in sorted(failed))}) can be restored into "
                                     f"this run; the newest failed with {failed[0][1]}. {self._advice()}")
        for step, reason in failed:
            log.warning("checkpoint at step %d in %s could not be restored (%s); using step %d",
                        step, self.directory, reason, restored[0])
        if restored is None:
            return None
        self._set_aside([step for step, _ in failed])
        step, items = restored
        return step, items.state, items.meta

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


def _leaf_specs(tree) -> dict:
    """{path: (shape, dtype)} of a state's arrays or of Orbax's metadata of them, the paths spelt
    alike (Orbax stores a namedtuple's or a dataclass's fields as dict keys)."""
    specs = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = "/".join(str(next((getattr(k, a) for a in ("key", "name", "idx") if hasattr(k, a)), k)) for k in path)
        shape = getattr(leaf, "shape", None)
        if shape is not None and jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            shape = None  # a typed key's stored shape carries its key data: not compared
        specs[name] = (None if shape is None else tuple(shape), str(getattr(leaf, "dtype", "")))
    return specs


def _first_difference(stored: dict, wanted: dict) -> str:
    """'' if the checkpoint's arrays are this run's; else the first difference, and how many more.
    Shapes and names only: a restore casts dtypes."""
    differences = []
    for path, (shape, _) in wanted.items():
        if path not in stored:
            differences.append(f"this run has {path}, the checkpoint has not")
        elif None not in (shape, stored[path][0]) and shape != stored[path][0]:
            differences.append(f"{path} is {list(stored[path][0])} there, {list(shape)} here")
    differences += [f"the checkpoint has {p}, this run has not" for p in stored if p not in wanted]
    if not differences:
        return ""
    more = len(differences) - 1
    return differences[0] + (f" (and {more} more difference{'s' * (more > 1)})" if more else "")


def describe_devices() -> dict:
    return {"process_count": jax.process_count(), "device_count": jax.device_count()}
