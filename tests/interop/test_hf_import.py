"""Hugging Face BERT / GPT-2 checkpoints imported into our TextEncoder / TextDecoder give the
reference implementation's numbers. The references (transformers + sentence-transformers on torch,
CPU) are stored under tests/interop/data/ by make_references.py, which says how to regenerate them."""

import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sora_jax.data.tokenizers import HFTokenizer
from sora_jax.infer.decode import sample
from sora_jax.interop.hf_checkpoint import CheckpointImportError
from sora_jax.interop.pretrained import import_bert, import_gpt2, minilm_dir
from sora_jax.interop.safetensors_io import load_params, save_params
from sora_jax.models.config import TextDecoderConfig
from sora_jax.models.text_decoder import TextDecoder
from sora_jax.models.text_encoder import TextEncoder

DATA = os.path.join(os.path.dirname(__file__), "data")
GPT2_DIR = os.path.join(DATA, "gpt2_tiny")


@pytest.fixture(scope="module")
def minilm_ref():
    return load_file(os.path.join(DATA, "minilm_reference.safetensors"))


@pytest.fixture(scope="module")
def gpt2_ref():
    return load_file(os.path.join(DATA, "gpt2_tiny_reference.safetensors"))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_minilm_hidden_states_match_transformers(minilm_ref, scan_layers):
    cfg, params = import_bert(minilm_dir(), scan_layers=scan_layers)
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.norm_position) == (6, 384, 12, "post")
    ids, mask = jnp.asarray(minilm_ref["input_ids"]), jnp.asarray(minilm_ref["attention_mask"])
    assert not mask.all()  # the batch has padding
    hidden, pooled = TextEncoder(cfg).apply({"params": params}, ids, mask)
    # Every position, padding included (padded queries attend to the real keys in both).
    np.testing.assert_allclose(np.asarray(hidden), minilm_ref["last_hidden_state"], atol=1e-4, rtol=0)
    # Mean pooling over real tokens is sentence-transformers' all-MiniLM-L6-v2 embedding.
    ours, theirs = np.asarray(pooled, np.float64), minilm_ref["sentence_embeddings"].astype(np.float64)
    cosine = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() >= 0.99999


def test_minilm_tokenizer_gives_the_reference_ids(minilm_ref):
    """Our data pipeline's text encoding ([bos] + encode + [eos]) is BERT's [CLS] ... [SEP]."""
    from safetensors import safe_open
    with safe_open(os.path.join(DATA, "minilm_reference.safetensors"), "numpy") as f:
        sentences = f.metadata()["sentences"].split("\n")
    tok = HFTokenizer(os.path.join(minilm_dir(), "tokenizer.json"))
    for sentence, ids, mask in zip(sentences, minilm_ref["input_ids"], minilm_ref["attention_mask"]):
        assert [tok.bos_id] + tok.encode(sentence) + [tok.eos_id] == ids[mask.astype(bool)].tolist()
        assert set(ids[~mask.astype(bool)].tolist()) <= {tok.pad_id}


class _LanguageModel(nn.Module):
    """The decoder alone, with the `decode_step` method the KV-cache decoding loop calls."""
    cfg: TextDecoderConfig

    def setup(self):
        self.decoder = TextDecoder(self.cfg)

    def decode_step(self, tokens):
        return self.decoder(tokens, decode=True)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_gpt2_logits_and_greedy_continuation_match_transformers(gpt2_ref, scan_layers):
    cfg, params = import_gpt2(GPT2_DIR, scan_layers=scan_layers)
    assert (cfg.norm_position, cfg.mlp_activation, cfg.cross_attention, cfg.tie_embeddings) == \
        ("pre", "gelu_tanh", False, True)
    ids = jnp.asarray(gpt2_ref["input_ids"])
    logits = TextDecoder(cfg).apply({"params": params}, ids)
    np.testing.assert_allclose(np.asarray(logits), gpt2_ref["logits"], atol=1e-4, rtol=0)
    # Greedy with our KV cache (no EOS: the reference ran for a fixed number of new tokens).
    greedy = gpt2_ref["greedy"]
    prompt_len = ids.shape[1]
    out, _ = jax.jit(lambda p, x: sample(_LanguageModel(cfg), {"decoder": p}, x, jnp.full((2,), prompt_len),
                                         max_len=greedy.shape[1], eos_id=-1, pad_id=0))(params, ids)
    np.testing.assert_array_equal(np.asarray(out), greedy)


def test_imported_params_survive_export_and_import_exactly(tmp_path):
    cfg, params = import_gpt2(GPT2_DIR)
    path = save_params(params, str(tmp_path / "gpt2.safetensors"))
    back = load_params(path, like=params)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def _edited_copy(tmp_path, source, edit_config=None, edit_tensors=None):
    target = tmp_path / "ckpt"
    target.mkdir(parents=True)
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    if edit_config:
        edit_config(config)
    (target / "config.json").write_text(json.dumps(config))
    if edit_tensors:
        tensors = load_file(os.path.join(source, "model.safetensors"))
        edit_tensors(tensors)
        save_file(tensors, str(target / "model.safetensors"))
    else:
        shutil.copy(os.path.join(source, "model.safetensors"), target / "model.safetensors")
    return str(target)


@pytest.mark.parametrize("field, value, importer", [
    ("hidden_act", "silu", import_bert),
    ("position_embedding_type", "relative_key", import_bert),
    ("model_type", "roberta", import_bert),
    ("is_decoder", True, import_bert),
    ("activation_function", "swish", import_gpt2),
    ("scale_attn_by_inverse_layer_idx", True, import_gpt2),
    ("add_cross_attention", True, import_gpt2),
])
def test_unsupported_config_option_is_a_clear_error(tmp_path, field, value, importer):
    source = minilm_dir() if importer is import_bert else GPT2_DIR
    path = _edited_copy(tmp_path, source, edit_config=lambda c: c.__setitem__(field, value))
    with pytest.raises(CheckpointImportError) as e:
        importer(path)
    message = str(e.value)
    assert "\n" not in message and f"'{field}'" in message and "config.json" in message and repr(value) in message


def test_missing_extra_or_misshapen_tensors_are_named(tmp_path):
    def drop(t):
        del t["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(CheckpointImportError, match=r"no tensor 'transformer\.h\.1\.mlp\.c_fc\.bias'"):
        import_gpt2(_edited_copy(tmp_path / "a", GPT2_DIR, edit_tensors=drop))

    def add(t):
        t["transformer.h.0.attn.rotary.inv_freq"] = np.zeros(4, np.float32)
    with pytest.raises(CheckpointImportError, match=r"'transformer\.h\.0\.attn\.rotary\.inv_freq' has no place"):
        import_gpt2(_edited_copy(tmp_path / "b", GPT2_DIR, edit_tensors=add))

    with pytest.raises(CheckpointImportError, match=r"'n_embd' = 40 does not divide|wte\.weight' has shape"):
        import_gpt2(_edited_copy(tmp_path / "c", GPT2_DIR, edit_config=lambda c: c.__setitem__("n_embd", 40)))


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointImportError, match="no such checkpoint folder"):
        import_bert(str(tmp_path / "nowhere"))
    (tmp_path / "torch_only").mkdir()
    (tmp_path / "torch_only" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "torch_only" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointImportError, match="is a pickle and is not read"):
        import_bert(str(tmp_path / "torch_only"))


def test_overriding_an_imported_architecture_field_is_refused():
    with pytest.raises(CheckpointImportError, match="'d_model' is set by the checkpoint"):
        import_gpt2(GPT2_DIR, d_model=64)
