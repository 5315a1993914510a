"""Export -> import of parameter pytrees through safetensors: exact in float32, a faithful cast
in bfloat16, and clear errors for files that do not fit the model."""

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from sora_jax.interop.safetensors_io import ParamsFileError, flatten, load_params, read_metadata, save_params
from sora_jax.models import presets
from tests.models.helpers import init_params


@pytest.fixture(scope="module")
def params():
    return init_params(presets.tiny())[1]


def test_float32_round_trip_is_exact(params, tmp_path):
    path = save_params(params, str(tmp_path / "model.safetensors"), metadata={"step": 7})
    loaded = load_params(path, like=params)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert read_metadata(path) == {"format": "sora_jax.params", "step": "7"}
    names = flatten(params)
    assert len(names) == len(jax.tree.leaves(params)) and all(name.split("/")[0] in params for name in names)


def test_bfloat16_export_stores_the_cast_and_loads_back_into_float32(params, tmp_path):
    path = save_params(params, str(tmp_path / "model.safetensors"), dtype="bfloat16")
    raw = load_params(path)
    for name, leaf in flatten(params).items():
        stored = flatten(raw)[name]
        assert stored.dtype == jnp.bfloat16
        assert np.array_equal(np.asarray(stored), np.asarray(leaf.astype(jnp.bfloat16)))
    loaded = load_params(path, like=params)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(loaded))


def test_files_that_do_not_fit_the_model_are_named(params, tmp_path):
    flat = flatten(params)
    name = sorted(flat)[0]
    smaller = {k: v for k, v in flat.items() if k != name}
    path = save_params(traverse_util.unflatten_dict(smaller, sep="/"), str(tmp_path / "missing.safetensors"))
    with pytest.raises(ParamsFileError, match=f"no tensor '{name}'"):
        load_params(path, like=params)
    reshaped = dict(flat)
    reshaped[name] = jnp.zeros(tuple(flat[name].shape) + (2,))
    path = save_params(traverse_util.unflatten_dict(reshaped, sep="/"), str(tmp_path / "shape.safetensors"))
    with pytest.raises(ParamsFileError, match="has shape"):
        load_params(path, like=params)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ParamsFileError, match="not a readable safetensors file"):
        load_params(str(tmp_path / "junk.safetensors"))
    with pytest.raises(ParamsFileError, match="no such file"):
        load_params(str(tmp_path / "absent.safetensors"))


def test_a_failed_write_leaves_no_temporary_file(params, tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        save_params(params, str(tmp_path / "folder"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_the_file_follows_the_umask(params, tmp_path):
    """safetensors creates its file owner-only (0600); an export is read like any other output."""
    previous = os.umask(0o027)
    try:
        path = save_params(params, str(tmp_path / "m.safetensors"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
