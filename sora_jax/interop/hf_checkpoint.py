"""Reading a Hugging Face model folder (`config.json` + `model.safetensors`) for import.

Only safetensors weights are read: `pytorch_model.bin` is a pickle and is refused. Every problem is
a `CheckpointImportError` whose one line names the file and the field or tensor.
"""

from __future__ import annotations

import json
import os

import numpy as np

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_MISSING = object()


class CheckpointImportError(ValueError):
    """A checkpoint our modules cannot represent exactly, or cannot read."""


class HFCheckpoint:
    """config (the parsed config.json) and tensors (name -> numpy array, read on first use), with
    a model-wide name prefix such as "bert." or "transformer." removed."""

    def __init__(self, directory: str):
        self.directory = directory
        self.config_path = os.path.join(directory, CONFIG_FILE)
        self.weights_path = os.path.join(directory, WEIGHTS_FILE)
        if not os.path.isdir(directory):
            raise CheckpointImportError(f"{directory}: no such checkpoint folder")
        try:
            with open(self.config_path) as f:
                self.config = json.load(f)
        except FileNotFoundError:
            raise CheckpointImportError(f"{self.config_path}: no such file (a Hugging Face model folder "
                                        f"holds config.json and model.safetensors)") from None
        except (OSError, ValueError) as e:
            raise CheckpointImportError(f"{self.config_path}: not readable JSON ({e})") from None
        if not isinstance(self.config, dict):
            raise CheckpointImportError(f"{self.config_path}: expected a JSON object")
        if not os.path.isfile(self.weights_path):
            pickled = os.path.join(directory, "pytorch_model.bin")
            hint = " (pytorch_model.bin is a pickle and is not read; convert it to safetensors)" \
                if os.path.exists(pickled) else ""
            raise CheckpointImportError(f"{self.weights_path}: no such file{hint}")
        self._tensors = None
        self._prefix = ""  # removed from every tensor name that had it (strip_prefix)
        self._original_names: dict[str, str] = {}  # stripped name -> the name in the file
        self.used: set[str] = set()

    # ---- config.json fields -------------------------------------------------------------------
    def get(self, key, default=_MISSING):
        if key in self.config and self.config[key] is not None:
            return self.config[key]
        if default is _MISSING:
            raise CheckpointImportError(f"{self.config_path}: field {key!r} is missing")
        return default

    def integer(self, key, default=_MISSING) -> int:
        value = self.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointImportError(f"{self.config_path}: field {key!r} must be a positive integer, got {value!r}")
        return value

    def number(self, key, default=_MISSING) -> float:
        value = self.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CheckpointImportError(f"{self.config_path}: field {key!r} must be a number, got {value!r}")
        return float(value)

    def require(self, key, supported, default=_MISSING, why=""):
        """The field's value, which must be one of `supported` (else the error names the field)."""
        value = self.get(key, default)
        if value not in supported:
            allowed = ", ".join(repr(v) for v in supported)
            raise CheckpointImportError(f"{self.config_path}: field {key!r} = {value!r} is not supported "
                                        f"(supported: {allowed}){'; ' + why if why else ''}")
        return value

    def unsupported(self, key, value_if_set, why):
        """Fails if the field is set to `value_if_set` (a feature our modules do not have)."""
        if self.config.get(key, None) == value_if_set:
            raise CheckpointImportError(f"{self.config_path}: field {key!r} = {value_if_set!r} is not supported "
                                        f"({why})")

    # ---- tensors ------------------------------------------------------------------------------
    def tensors(self) -> dict:
        if self._tensors is None:
            from safetensors import SafetensorError
            from safetensors.numpy import load_file
            try:
                self._tensors = load_file(self.weights_path)
            except (SafetensorError, OSError, ValueError) as e:
                raise CheckpointImportError(f"{self.weights_path}: not a readable safetensors file ({e})") from None
        return self._tensors

    def strip_prefix(self, *prefixes):
        """Drops the first of `prefixes` that every tensor name starting with it shares (e.g. the
        "bert." of a BertForMaskedLM file); names without it (an MLM head) keep theirs."""
        tensors = self.tensors()
        for prefix in prefixes:
            if any(name.startswith(prefix) for name in tensors):
                self._original_names = {(n[len(prefix):] if n.startswith(prefix) else n): n for n in tensors}
                self._tensors = {short: tensors[n] for short, n in self._original_names.items()}
                self._prefix = prefix
                return

    def _in_file(self, name) -> str:
        """How error messages name a tensor: as the file does (prefix included)."""
        return self._original_names.get(name, self._prefix + name)

    def take(self, name, shape) -> np.ndarray:
        """The float32 tensor `name`, which must have `shape`."""
        tensors = self.tensors()
        if name not in tensors:
            raise CheckpointImportError(f"{self.weights_path}: no tensor {self._in_file(name)!r}")
        array = tensors[name]
        if tuple(array.shape) != tuple(shape):
            raise CheckpointImportError(f"{self.weights_path}: tensor {self._in_file(name)!r} has shape "
                                        f"{tuple(array.shape)}, "
                                        f"config.json implies {tuple(shape)}")
        self.used.add(name)
        return np.asarray(array, np.float32)

    def take_first(self, names, shape) -> np.ndarray:
        """The first of `names` present (old BERT files call LayerNorm weights gamma/beta)."""
        present = [n for n in names if n in self.tensors()]
        return self.take(present[0] if present else names[0], shape)

    def check_all_used(self, ignorable_prefixes=(), ignorable_suffixes=()) -> list[str]:
        """Every tensor not imported must be one we may ignore (a pooler, a cached mask); any other
        is an error, since it is part of a model ours would not be. Returns the ignored names."""
        ignored = []
        for name in sorted(set(self.tensors()) - self.used):
            if name.startswith(tuple(ignorable_prefixes)) or name.endswith(tuple(ignorable_suffixes)):
                ignored.append(self._in_file(name))
            else:
                raise CheckpointImportError(f"{self.weights_path}: tensor {self._in_file(name)!r} has no place in "
                                            f"the imported model (a layer this architecture does not have)")
        return ignored
