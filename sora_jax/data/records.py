"""Serialisation of data records (dicts of str / int / float / bool / bytes / lists / numpy arrays)
for ArrayRecord shards: msgpack via flax.serialization, never pickle."""

from __future__ import annotations

import numpy as np
from flax import serialization

PROVENANCE = ("_file", "_record")


def encode_record(record: dict) -> bytes:
    clean = {k: v for k, v in record.items() if k not in PROVENANCE}
    return serialization.msgpack_serialize(_lists_to_dicts(clean))


def decode_record(data: bytes) -> dict:
    return _dicts_to_lists(serialization.msgpack_restore(data))


# msgpack_serialize handles nested dicts and numpy arrays; lists go through as index-keyed dicts
# so that a list of arrays keeps its arrays.
_LIST_TAG = "__list__"


def _lists_to_dicts(x):
    if isinstance(x, dict):
        return {k: _lists_to_dicts(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return {_LIST_TAG: True, **{str(i): _lists_to_dicts(v) for i, v in enumerate(x)}}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _dicts_to_lists(x):
    if isinstance(x, dict):
        if x.get(_LIST_TAG):
            return [_dicts_to_lists(x[str(i)]) for i in range(len(x) - 1)]
        return {k: _dicts_to_lists(v) for k, v in x.items()}
    return x
