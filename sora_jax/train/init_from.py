"""Starting parts of the Sora model from Hugging Face checkpoints (`model.<part>.init_from`).

    config.model.text_encoder.init_from = "/path/to/bert_dir"   # BERT family -> TextEncoder
    config.model.decoder.init_from = "/path/to/gpt2_dir"        # GPT-2 family -> TextDecoder

`resolve` runs before the model is built: the folder's config.json fixes the part's architecture
fields (width, depth, heads, activation, norm placement, vocabulary, positions), which are written
into the config (and so into the run's config.json) and logged where they changed. Settings that
are not architecture (dropout, attention implementation, layer scanning, remat, pooling, the
decoder's cross-attention) stay as configured. `load` reads the weights; the trainer grafts them
into the freshly initialised, sharded parameters before the first step. A resumed run restores
its checkpoint instead.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import jax

from sora_jax.interop.hf_checkpoint import CheckpointImportError, HFCheckpoint
from sora_jax.interop.pretrained import FAMILIES, graft, load_part, read_settings, settings_diff
from sora_jax.train.errors import ConfigurationError

log = logging.getLogger(__name__)
TOKENIZER_FILE = "tokenizer.json"


class PendingImport(NamedTuple):
    part: str
    path: str
    ckpt: HFCheckpoint
    settings: dict


def resolve(config) -> list[PendingImport]:
    """Writes each imported part's architecture into config.model (in place); returns the imports."""
    pending = []
    for part in FAMILIES:
        path = config.model[part].get("init_from", "") if part in config.model else ""
        if not path:
            continue
        key = f"model.{part}.init_from"
        try:
            ckpt, settings = read_settings(part, path)
        except CheckpointImportError as e:
            raise ConfigurationError(f"config key {key}: {e}") from None
        changed = settings_diff(config.model[part].to_dict(), settings)
        for field, value in settings.items():
            config.model[part][field] = value
        if changed:
            log.info("%s: config.json of %s sets %s", f"model.{part}", path,
                     ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        pending.append(PendingImport(part, path, ckpt, settings))
    return pending


def check_tokenizer(pending: list[PendingImport], tokenizer):
    """Pretrained embeddings only mean something with the checkpoint's own token ids: when the
    folder ships a tokenizer.json, data.tokenizer must have the same vocabulary."""
    for item in pending:
        path = os.path.join(item.path, TOKENIZER_FILE)
        if not os.path.isfile(path):
            continue
        from sora_jax.data.tokenizers import HFTokenizer
        expected = HFTokenizer(path).vocabulary
        if getattr(tokenizer, "vocabulary", None) != expected:
            raise ConfigurationError(f"config key data.tokenizer: model.{item.part}.init_from's weights need "
                                     f"the checkpoint's own token ids; set data.tokenizer = 'hf:{item.path}'")


def load(pending: list[PendingImport], model_cfg) -> dict:
    """part -> its imported parameter tree (numpy), in the layer layout the model uses."""
    trees = {}
    for item in pending:
        try:
            imported = load_part(item.part, item.path, scan_layers=getattr(model_cfg, item.part).scan_layers,
                                 ckpt=item.ckpt, settings=item.settings)
        except CheckpointImportError as e:
            raise ConfigurationError(f"config key model.{item.part}.init_from: {e}") from None
        if imported.ignored:
            log.info("model.%s.init_from: not used from the checkpoint: %s", item.part, ", ".join(imported.ignored))
        trees[item.part] = imported.params
    return trees


def graft_into(params, trees: dict):
    """The model's parameter tree with each imported part grafted in (same shardings)."""
    params = dict(params)
    for part, tree in trees.items():
        try:
            params[part], kept = graft(params[part], tree, where=f"model.{part}.init_from")
        except CheckpointImportError as e:
            raise ConfigurationError(f"config key {e}") from None
        log.info("model.%s: %d parameter arrays imported%s", part, len(jax.tree.leaves(tree)),
                 f"; kept freshly initialised: {', '.join(kept)}" if kept else "")
    return params
