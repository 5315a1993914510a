"""grain pipelines: sources + task builders -> batches of fixed-shape examples.

Training, per component (dataset x task):
  source -> this process's share -> shuffle (seeded, reshuffled each epoch) -> repeat
  -> build examples (rng seeded by (seed, epoch, record id): independent of the process layout)
  -> drop bad records if on_error="skip", counting them -> [split and pack LM documents] -> complete
Components are mixed by weight (deterministically), batched, and optionally handed to worker
processes. Iterators support get_state()/set_state(): a restored iterator yields exactly the
batches the original would have.

Evaluation: one pass, no shuffle, every process gets the same number of batches (padded with
weight-0 examples), so multi-host evaluation never waits on a process that has run out.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import numpy as np

from sora_jax.data.errors import ON_ERROR, DataError, where_of
from sora_jax.data.schema import ExampleSpec, stack_examples
from sora_jax.data.tasks.common import TaskBuilder

_PACKED_FIELDS = ("decoder_inputs", "decoder_targets", "decoder_mask")
_PER_TOKEN_SKIPS = "decoder_num_skipped"  # skip counts carried through the packer, summed after it


@dataclasses.dataclass(frozen=True)
class Component:
    """One dataset read through one task; `weight` is its share of a training mixture."""

    name: str
    source: Any
    builder: TaskBuilder
    weight: float = 1.0


class Skipped:
    """Stands in for an example whose record was bad (on_error="skip"); carries the reason."""

    def __init__(self, reason: str):
        self.reason = reason


class _Guarded:
    """Reads record `record_id` and builds its example with a generator seeded by
    (seed, epoch, record id): the same record gets the same augmentation in the same epoch
    whatever the number of processes. Under on_error="skip" a bad record becomes Skipped."""

    def __init__(self, name, source, builder, on_error, seed, epoch_size):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.name, self.source, self.builder, self.on_error = name, source, builder, on_error
        self.seed, self.epoch_size = seed, epoch_size

    def __call__(self, position, record_id):
        rng = np.random.default_rng([self.seed, position // self.epoch_size, int(record_id)])
        record = None
        try:
            record = self.source[int(record_id)]
            return self.builder(record, rng)
        except Exception as e:  # noqa: BLE001 - every failure must name its record
            if not isinstance(e, DataError):
                place = where_of(record) if isinstance(record, dict) else {"file": self.name, "record": int(record_id)}
                e = DataError(f"{type(e).__name__}: {e}", **place)
            if self.on_error == "skip":
                return Skipped(str(e))
            raise e from None


class _SkipBadRecords(grain.IterDataset):
    """Drops Skipped elements and records how many were dropped in the next kept element.
    If every record of the stream is bad it raises instead of looping forever."""

    def __init__(self, parent, per_token: bool, name: str, limit: int):
        super().__init__(parent)
        self._per_token, self._name, self._limit = per_token, name, limit

    def __iter__(self):
        return _SkipBadRecordsIterator(self._parent.__iter__(), self._per_token, self._name, self._limit)


class _SkipBadRecordsIterator(grain.DatasetIterator):
    def __init__(self, parent, per_token, name, limit):
        super().__init__(parent)
        self._per_token, self._name, self._limit = per_token, name, limit

    def __next__(self):
        skipped = 0
        while isinstance(element := next(self._parent), Skipped):
            skipped += 1
            if skipped >= self._limit:
                raise DataError(f"all {self._limit} records of this process's share are bad; the last: "
                                f"{element.reason}", file=self._name)
        if self._per_token:  # the packer keeps per-token features: put the count on the first token
            counts = np.zeros(len(element["decoder_inputs"]), np.int32)
            counts[0] = skipped
            return {**element, _PER_TOKEN_SKIPS: counts}
        return {**element, "num_skipped": np.int32(skipped)}

    def get_state(self):
        return self._parent.get_state()  # nothing pending between calls: counts are emitted at once

    def set_state(self, state):
        self._parent.set_state(state)


class _SplitDocument(grain.experimental.FlatMapTransform):
    """Cuts a variable-length LM document into pieces of at most `length` tokens for the packer."""

    max_fan_out = 64  # the LM builder caps documents at 64 rows' worth of tokens

    def __init__(self, length: int):
        self.length = length

    def flat_map(self, element):
        n = len(element["decoder_inputs"])
        return [{k: v[start:start + self.length] for k, v in element.items()} for start in range(0, n, self.length)]


class _Complete:
    def __init__(self, spec: ExampleSpec, task: str, packed: bool):
        self.spec, self.task, self.packed = spec, task, packed

    def __call__(self, element):
        element = dict(element)
        if self.packed:
            element["decoder_segment_ids"] = element.pop("decoder_inputs_segment_ids")
            element["decoder_positions"] = element.pop("decoder_inputs_positions")
            for name in _PACKED_FIELDS[1:]:
                element.pop(f"{name}_segment_ids", None)
                element.pop(f"{name}_positions", None)
            element["num_skipped"] = np.int32(element.pop(_PER_TOKEN_SKIPS).sum())
        return self.spec.complete(element, self.task)


def _process_share(num_records: int, process_index: int, process_count: int):
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return grain.MapDataset.range(num_records)[process_index::process_count]


def _component_stream(component: Component, spec: ExampleSpec, *, seed, process_index, process_count, on_error,
                      read_threads):
    share = _process_share(len(component.source), process_index, process_count)
    if len(share) == 0:
        files = getattr(component.source, "_paths", None) or [getattr(component.source, "_root", None)]
        where = ", ".join(str(f) for f in files if f) or component.name
        raise DataError(f"{component.name}: no records for process {process_index} of {process_count} "
                        f"(the dataset has {len(component.source)})", file=where)
    ds = share.shuffle(seed=seed).repeat(None)  # elements are global record ids, reshuffled every epoch
    ds = ds.map_with_index(_Guarded(component.name, component.source, component.builder, on_error, seed + 1,
                                    len(share)))
    packed = component.builder.task == "lm" and component.builder.options.get("pack", False)
    # grain's default of 16 reader threads costs more than it gives on a few cores (GIL contention):
    # read_threads=0 reads in the consuming thread; worker processes are the way to scale.
    read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=4 * read_threads)
    it = _SkipBadRecords(ds.to_iter_dataset(read), per_token=packed, name=component.name, limit=len(share))
    if packed:
        # Long documents continue in the next rows rather than being cut off.
        it = grain.experimental.FlatMapIterDataset(it, _SplitDocument(spec.decoder_len))
        length = {name: spec.decoder_len for name in _PACKED_FIELDS + (_PER_TOKEN_SKIPS,)}
        it = grain.experimental.FirstFitPackIterDataset(
            it, length_struct=length, num_packing_bins=8, seed=seed, shuffle_bins=True,
            meta_features=(_PER_TOKEN_SKIPS, "decoder_targets", "decoder_mask"))
    return it.map(_Complete(spec, component.builder.task, packed))


def training_dataset(components, spec: ExampleSpec, *, batch_size: int, seed: int, process_index: int = 0,
                     process_count: int = 1, on_error: str = "raise", num_workers: int = 0,
                     worker_buffer_size: int = 2, read_threads: int = 0, prefetch_batches: int = 0
                     ) -> grain.IterDataset:
    """An endless stream of batches of `batch_size` (this process's share of the global batch).

    num_workers > 0 builds batches in that many processes; prefetch_batches > 0 keeps that many
    ready batches in a background thread of this process."""
    streams = [_component_stream(c, spec, seed=seed + 1000 * i, process_index=process_index,
                                 process_count=process_count, on_error=on_error, read_threads=read_threads)
               for i, c in enumerate(components)]
    weights = [float(c.weight) for c in components]
    if any(w <= 0 for w in weights):
        raise ValueError(f"mixture weights must be positive, got {dict(zip([c.name for c in components], weights))}")
    ds = streams[0] if len(streams) == 1 else grain.IterDataset.mix(streams, weights)
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=stack_examples)
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                         per_worker_buffer_size=worker_buffer_size))
    if prefetch_batches > 0:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch_batches)
    return ds


def close_training_iterator(iterator) -> None:
    """Stops the worker processes of a `training_dataset` iterator, and makes freeing its batches
    (and the iterator, whose buffers hold some) unlink their shared memory at once.

    grain moves a worker's batch through POSIX shared memory and unlinks it when the array is
    freed, on a background thread pool that nothing drains at interpreter exit: the last batches'
    segments then outlive the process until Python's resource tracker removes them, warning
    "leaked shared_memory objects" (google/grain#398). Drop the iterator and its batches after
    this call, and nothing is left for the tracker."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()  # workers stop; the batches still queued in them are unlinked
    from grain._src.python.ipc import shared_memory_array  # the pool is not public API

    cls = shared_memory_array.SharedMemoryArray
    pool = getattr(cls, "_del_thread_pool", None)
    if pool is not None:
        # Synchronous from now on; a new multiprocess iterator restarts the pool.
        cls._del_thread_pool = cls._outstanding_del_requests = None
        pool.close()
        pool.join()  # the unlinks already handed to it


def _ensure_absl_flags_parsed():
    """grain's worker processes read absl flags; outside absl.app.run (tests, notebooks, user
    scripts) nothing has parsed them, so mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _EvalElement:
    def __init__(self, guarded: _Guarded, spec: ExampleSpec, task: str, share):
        self.guarded, self.spec, self.task, self.share = guarded, spec, task, share

    def __call__(self, i):
        if i >= len(self.share):
            return self.spec.empty()  # padding: weight 0
        # Seeded by record id (epoch 0): the same example whatever the number of processes.
        element = self.guarded(0, self.share[i])
        if isinstance(element, Skipped):
            empty = self.spec.empty()
            empty["num_skipped"] = np.int32(1)
            return empty
        return self.spec.complete(element, self.task)


def evaluation_dataset(component: Component, spec: ExampleSpec, *, batch_size: int, process_index: int = 0,
                       process_count: int = 1, on_error: str = "raise", seed: int = 0) -> grain.MapDataset:
    """One deterministic pass over the split; skipped records come back as weight-0 examples with
    num_skipped=1, so the count stays exact."""
    share = _process_share(len(component.source), process_index, process_count)
    per_process = math.ceil(len(component.source) / process_count)
    num_batches = math.ceil(per_process / batch_size)
    if component.builder.options.get("pack"):
        raise ValueError("evaluation builders must not pack (build them with train=False)")
    guarded = _Guarded(component.name, component.source, component.builder, on_error, seed, len(component.source))
    element = _EvalElement(guarded, spec, component.builder.task, share)
    ds = grain.MapDataset.range(num_batches * batch_size).map(element)
    return ds.batch(batch_size, drop_remainder=True, batch_fn=stack_examples)
