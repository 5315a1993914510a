"""A run's own resolved config (DIR/config.json, written by every run) as a config to run again:

    python -m sora_jax.main --config=configs/from_run.py:runs/demo/config.json --workdir=runs/demo2

Trains exactly what that run trained (every setting, overrides included); `--config.a.b=VALUE`
overrides still apply on top. Settings this version of sora_jax does not know are an error
naming the key, as for any config.
"""

import json

import ml_collections

from configs import base


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _like(value, default):
    """JSON lists back to the tuples the defaults hold (mesh shapes, rule tables, and within)."""
    return _tuples(value) if isinstance(default, tuple) else value


def _overlay(node: ml_collections.ConfigDict, saved: dict, prefix: str):
    for key, value in saved.items():
        if key not in node:
            raise KeyError(f"{prefix}{key} is not a setting of this version of sora_jax")
        if isinstance(node[key], ml_collections.ConfigDict) and isinstance(value, dict):
            if not node[key] and value:  # an open table (a data mixture): take it whole
                node[key] = ml_collections.ConfigDict(value)
            else:
                _overlay(node[key], value, f"{prefix}{key}.")
        else:
            with node.ignore_type():  # None placeholders and int/float defaults take the saved type
                node[key] = _like(value, node[key])


def get_config(path: str = ""):
    if not path:
        raise ValueError("configs/from_run.py needs the run's config.json: "
                         "--config=configs/from_run.py:DIR/config.json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    config = base.get_config()
    _overlay(config, saved, "")
    return config
