"""Checkpoints restore onto a different mesh (resharded), and carry their tokenizer."""

import grain
import jax
import numpy as np
import pytest

from sora_jax.data.config import data_config
from sora_jax.data.tokenizers import ByteTokenizer
from sora_jax.models import SoraModel, presets
from sora_jax.train import optimizer, xla_cpu
from sora_jax.train.backends import JitBackend
from sora_jax.train.checkpoint import Checkpointer, tokenizer_from_record, tokenizer_record
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES
from tests.train.helpers import SPEC, batches, optim, tiny_model


def _backend(shape):
    mesh = make_mesh(shape, jax.devices()[:int(np.prod(shape))])
    model = SoraModel(xla_cpu.avoid_collective_deadlocks(tiny_model(), mesh))
    o = optim("adamw", lr=1e-3, b1=0.9)
    return JitBackend(model, optimizer.make_optimizer(o, 10), optimizer.learning_rate_schedule(o, 10), SPEC, mesh,
                      DEFAULT_RULES, {})


def test_a_checkpoint_from_one_mesh_restores_resharded_on_another(tmp_path):
    saver = _backend((2, 2, 2))
    state = saver.init(jax.random.key(0))
    state, _ = saver.step(state, saver.put_batch(batches(1)[0]), jax.random.key(1))
    ckpt = Checkpointer(str(tmp_path), async_save=True)
    saved = jax.tree.map(np.asarray, jax.device_get(state))
    data = iter(grain.MapDataset.range(100).to_iter_dataset())
    for _ in range(7):
        next(data)
    ckpt.save(1, state, data, {"layout": {}})
    ckpt.close()

    loader = _backend((4, 1, 1))  # 4 devices, a different layout
    fresh = iter(grain.MapDataset.range(100).to_iter_dataset())
    step, restored, meta = Checkpointer(str(tmp_path)).restore_latest(loader.abstract_state(), fresh)
    assert step == 1 and next(fresh) == 7  # the data position came back too
    for got, want, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(saved),
                                   jax.tree.leaves(loader.state_shardings)):
        np.testing.assert_array_equal(np.asarray(got), want)
        assert got.sharding == sharding
    # Training continues on the new mesh.
    restored, metrics = loader.step(restored, loader.put_batch(batches(2)[1]), jax.random.key(2))
    assert np.isfinite(float(metrics["loss"]))


def test_the_tokenizer_travels_inside_the_checkpoint_metadata(tmp_path):
    record = tokenizer_record(ByteTokenizer())
    tok = tokenizer_from_record(record, str(tmp_path / "tok"))
    assert tok.kind == "byte" and tok.decode(tok.encode("héllo")) == "héllo"
    assert data_config().tokenizer == "byte"


def test_checkpoints_that_do_not_fit_the_run_are_refused_not_buried(tmp_path):
    saver = _backend((1, 1, 1))
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(3, saver.init(jax.random.key(0)), iter(grain.MapDataset.range(4).to_iter_dataset()), {})
    ckpt.close()
    other = JitBackend(SoraModel(presets.tiny().__class__.from_dict({"decoder": {"num_layers": 3}})),
                       saver.tx, optimizer.learning_rate_schedule(optim(), 10), SPEC, saver.mesh, DEFAULT_RULES, {})
    from sora_jax.train.checkpoint import CheckpointMismatch
    # From the metadata alone, naming the first difference.
    with pytest.raises(CheckpointMismatch, match=r"step 3 .* does not fit this run: params/\S+ is \[2, [^]]*\] "
                                                 r"there, \[3, [^]]*\] here \(and \d+ more differences\)"):
        Checkpointer(str(tmp_path)).check_fits(other.abstract_state())
    Checkpointer(str(tmp_path)).check_fits(saver.abstract_state())  # the run that wrote it fits
    with pytest.raises(CheckpointMismatch, match="none of the checkpoints"):
        Checkpointer(str(tmp_path)).restore_latest(other.abstract_state(), iter(grain.MapDataset.range(4).to_iter_dataset()))
    assert Checkpointer(str(tmp_path)).steps() == [3]  # still there


def test_check_fits_names_a_changed_shape(tmp_path):
    saver = _backend((1, 1, 1))
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(1, saver.init(jax.random.key(0)), iter(grain.MapDataset.range(4).to_iter_dataset()), {})
    ckpt.close()
    from sora_jax.train.checkpoint import CheckpointMismatch, _first_difference
    wider = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype) if a.ndim else a,
                         saver.abstract_state())
    with pytest.raises(CheckpointMismatch, match=r"is \[\d+(, \d+)*\] there, \[\d+(, \d+)*\] here"):
        Checkpointer(str(tmp_path)).check_fits(wider)
    assert _first_difference({"a": ((2,), "float32")}, {"a": ((2,), "bfloat16")}) == ""  # a restore casts
    assert _first_difference({"a": ((2,), "f"), "b": ((1,), "f")}, {"a": ((3,), "f")}) == (
        "a is [2] there, [3] here (and 1 more difference)")


@pytest.mark.parametrize("replica_parallel", [None, True])
def test_saving_replicated_arrays_compiles_no_slice_programs(tmp_path, replica_parallel):
    """Orbax's replica-parallel saving slices every replica of every replicated array, compiling a
    slice program per shape (a 4-device state of 600 small arrays blocked its first save for 36 s).
    The Checkpointer uses it only across processes, and only for slices of at least 1 MiB."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    state = {f"w{i}": jax.device_put(np.full((3 + i, 5), i, np.float32), NamedSharding(mesh, PartitionSpec()))
             for i in range(12)}
    compiles = []

    def on_event(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    ckpt = Checkpointer(str(tmp_path), replica_parallel=replica_parallel)  # None: this one process decides
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        ckpt.save(1, state, iter(grain.MapDataset.range(4).to_iter_dataset()), {})
        ckpt.close()
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert compiles == []
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    _, restored, _ = Checkpointer(str(tmp_path)).restore_latest(abstract, iter(grain.MapDataset.range(4).to_iter_dataset()))
    for name, value in state.items():
        np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(value))
