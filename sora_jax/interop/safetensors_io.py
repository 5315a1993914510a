"""Any of our parameter pytrees <-> a safetensors file, with flat "/"-joined names
("decoder/layers/attention/query/kernel"), in float32 or bfloat16. No pickle: safetensors holds
only named arrays and a string-to-string metadata header.

    save_params(state.params, "model.safetensors", dtype="bfloat16")
    params = load_params("model.safetensors", like=state.params)   # checked against the model's tree
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

SEPARATOR = "/"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FORMAT = {"format": "sora_jax.params"}


class ParamsFileError(ValueError):
    """A file that cannot be read as these parameters (one line naming the file and the name)."""


def flatten(params) -> dict:
    """name -> array for every leaf; boxed (logically partitioned) trees are unboxed."""
    flat = traverse_util.flatten_dict(nn.meta.unbox(params), sep=SEPARATOR)
    return {name: leaf for name, leaf in flat.items()}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_params(params, path: str, *, dtype: str | None = None, metadata: dict | None = None) -> str:
    """Writes the tree (cast to dtype, "float32" or "bfloat16", if given) atomically; returns path."""
    from safetensors.flax import save_file
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    arrays = {}
    for name, leaf in flatten(params).items():
        array = jnp.asarray(jax.device_get(leaf))
        if dtype is not None and jnp.issubdtype(array.dtype, jnp.floating):
            array = array.astype(DTYPES[dtype])
        arrays[name] = array
    temp = path + ".tmp"
    try:
        save_file(arrays, temp, metadata={**FORMAT, **{str(k): str(v) for k, v in (metadata or {}).items()}})
        os.chmod(temp, 0o666 & ~_umask())  # safetensors creates it owner-only; other outputs follow the umask
        os.replace(temp, path)
    except BaseException:
        if os.path.isfile(temp):  # no stray half file when the write or the rename fails
            os.remove(temp)
        raise
    return path


def load_params(path: str, *, like=None) -> dict:
    """The nested tree of jnp arrays. With `like` (a parameter tree or its eval_shape), the file
    must hold exactly its names and shapes; each array is cast to like's dtype."""
    from safetensors import SafetensorError
    from safetensors.flax import load_file
    if not os.path.exists(path):
        raise ParamsFileError(f"{path}: no such file")
    try:
        arrays = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ParamsFileError(f"{path}: not a readable safetensors file ({e})") from None
    if like is not None:
        expected = flatten(like)
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing:
            raise ParamsFileError(f"{path}: no tensor {missing[0]!r} (and {len(missing) - 1} more missing)")
        if extra:
            raise ParamsFileError(f"{path}: tensor {extra[0]!r} is not a parameter of this model "
                                  f"(and {len(extra) - 1} more)")
        for name, want in expected.items():
            if tuple(arrays[name].shape) != tuple(want.shape):
                raise ParamsFileError(f"{path}: tensor {name!r} has shape {tuple(arrays[name].shape)}, the model "
                                      f"needs {tuple(want.shape)}")
            arrays[name] = arrays[name].astype(want.dtype)
    return traverse_util.unflatten_dict(arrays, sep=SEPARATOR)


def read_metadata(path: str) -> dict:
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        return dict(f.metadata() or {})


__all__ = ["ParamsFileError", "flatten", "load_params", "read_metadata", "save_params"]
