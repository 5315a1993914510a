"""Tokenizers: exact round trips (non-ASCII too), special ids, save/load, specs and their errors."""

import json
import os
import random
import re

import numpy as np
import pytest
import tokenizers as hf

from sora_jax.data.errors import DataError
from sora_jax.data.tokenizers import (ByteTokenizer, HFTokenizer, SentencePieceTokenizer, load_tokenizer,
                                      make_tokenizer, train_sentencepiece)

# Text a data pipeline meets: accents, CJK, emoji, combining marks, tabs, newlines, odd spacing.
ROUND_TRIP_TEXTS = [
    "",
    "hello world",
    "A small red circle above a large blue square.",
    "café naïve résumé Ångström",
    "東京は晴れ。 北京 서울",
    "emoji 🎉🚀 and flags 🇫🇷",
    "e\u0301 combining, ﬁ ligature, Ａ fullwidth",
    "  two leading spaces, double  inside, trailing ",
    " ",
    "tab\there\nnew line\r\nwindows",
    "\x00 control \x7f",
]


def sentence_corpus(count: int, seed: int) -> list[str]:
    """A few hundred varied English-like sentences (seeded), enough for a small vocabulary."""
    rng = random.Random(seed)
    sizes = ["small", "large", "tiny", "huge", "medium"]
    colors = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
    shapes = ["circle", "square", "triangle", "star", "hexagon", "diamond"]
    relations = ["above", "below", "left of", "right of", "next to", "far from"]
    verbs = ["sits", "rests", "floats", "spins", "waits", "glows"]
    templates = [
        "A {s} {c} {h} {v} {r} a {s2} {c2} {h2}.",
        "There are {n} {c} {h}s in the picture.",
        "What color is the {h}? It is {c}.",
        "The {h} {v} quietly, and the {c2} {h2} {v2} {r} it.",
        "How many {h}s are there? {N}.",
    ]
    numbers = ["one", "two", "three", "four", "five"]
    corpus = []
    for _ in range(count):
        corpus.append(rng.choice(templates).format(
            s=rng.choice(sizes), s2=rng.choice(sizes), c=rng.choice(colors), c2=rng.choice(colors),
            h=rng.choice(shapes), h2=rng.choice(shapes), v=rng.choice(verbs), v2=rng.choice(verbs),
            r=rng.choice(relations), n=rng.choice(numbers), N=rng.choice(numbers).capitalize()))
    return corpus


CORPUS = sentence_corpus(400, seed=0)
SPM_VOCAB = 400


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def spm_tok(tmp_path_factory):
    return train_sentencepiece(CORPUS, SPM_VOCAB, str(tmp_path_factory.mktemp("spm")))


def byte_level_bpe_json(directory, special_tokens) -> str:
    """A GPT-2-style byte-level BPE tokenizer.json (no unk: every byte has a token)."""
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=400, special_tokens=list(special_tokens),
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    path = os.path.join(str(directory), "tokenizer.json")
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def gpt2_json(tmp_path_factory):
    """Byte-level BPE with <|endoftext|> and a separate <pad>, so padding is distinguishable."""
    return byte_level_bpe_json(tmp_path_factory.mktemp("gpt2"), ["<|endoftext|>", "<pad>"])


def wordpiece_json(directory, special_tokens=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")) -> str:
    """A BERT-like (lowercasing) WordPiece tokenizer.json with the given special tokens."""
    tok = hf.Tokenizer(hf.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = hf.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    tok.decoder = hf.decoders.WordPiece()
    trainer = hf.trainers.WordPieceTrainer(vocab_size=300, special_tokens=list(special_tokens), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    path = os.path.join(str(directory), "tokenizer.json")
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def bert_json(tmp_path_factory):
    return wordpiece_json(tmp_path_factory.mktemp("bert"))


@pytest.fixture(params=["byte", "sentencepiece", "hf"])
def any_tok(request, spm_tok, gpt2_json):
    return {"byte": lambda: ByteTokenizer(), "sentencepiece": lambda: spm_tok,
            "hf": lambda: HFTokenizer(gpt2_json)}[request.param]()


# --------------------------------------------------------------------------- all three

@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip_is_exact(any_tok, text):
    ids = any_tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < any_tok.vocab_size for i in ids)
    assert any_tok.decode(ids) == text


def test_special_ids_are_in_the_vocabulary_and_distinct_where_they_should_be(any_tok):
    specials = any_tok.special_ids
    assert set(specials) == {"pad", "bos", "eos", "unk", "sep"}
    assert all(0 <= i < any_tok.vocab_size for i in specials.values())
    assert any_tok.pad_id not in {any_tok.bos_id, any_tok.eos_id, any_tok.unk_id}


def test_decode_drops_special_tokens(any_tok):
    text = "café 東京 two  spaces"
    t = any_tok
    ids = [t.bos_id, *t.encode(text), t.sep_id, *t.encode(text), t.eos_id, t.pad_id, t.pad_id]
    assert t.decode(ids) == text + text
    assert t.decode(np.asarray(ids, dtype=np.int32)) == text + text  # model outputs are arrays


def test_save_then_load_gives_identical_encodings(any_tok, tmp_path):
    any_tok.save(str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    assert type(loaded) is type(any_tok)
    assert loaded.special_ids == any_tok.special_ids and loaded.vocab_size == any_tok.vocab_size
    for text in ROUND_TRIP_TEXTS + CORPUS[:20]:
        assert loaded.encode(text) == any_tok.encode(text)
    assert make_tokenizer(str(tmp_path)).encode(CORPUS[0]) == any_tok.encode(CORPUS[0])


# --------------------------------------------------------------------------- byte

def test_byte_layout():
    tok = ByteTokenizer()
    assert tok.special_ids == {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "sep": 4}
    assert tok.vocab_size == 261
    assert tok.encode("A\u00e9") == [0x41 + 5, 0xC3 + 5, 0xA9 + 5]


def test_byte_decode_marks_unknown_and_broken_ids():
    tok = ByteTokenizer()
    a, b = tok.encode("ab")
    assert tok.decode([a, tok.unk_id, 261, 10_000, -1, b]) == "a" + "\ufffd" * 4 + "b"
    truncated = tok.encode("é")[:1]  # half a UTF-8 sequence, as a model could emit
    assert tok.decode(truncated) == "\ufffd"


# --------------------------------------------------------------------------- sentencepiece

def test_sentencepiece_ids_and_vocab_size(spm_tok):
    assert spm_tok.special_ids == {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "sep": 4}
    assert 261 < spm_tok.vocab_size <= SPM_VOCAB
    # Learnt pieces, not just bytes: a frequent word after a space is a single id.
    assert len(spm_tok.encode(" circle")) == 1


def test_sentencepiece_training_honours_vocab_size_and_is_deterministic(tmp_path):
    first = train_sentencepiece(CORPUS, 300, str(tmp_path / "a"))
    second = train_sentencepiece(iter(CORPUS), 300, str(tmp_path / "b"))  # any iterable, even one-shot
    assert first.vocab_size == second.vocab_size == 300
    with open(first.model_path, "rb") as a, open(second.model_path, "rb") as b:
        assert a.read() == b.read()
    for text in CORPUS[:50] + ROUND_TRIP_TEXTS:
        assert first.encode(text) == second.encode(text)


def test_sentencepiece_bpe_model_type(tmp_path):
    tok = train_sentencepiece(CORPUS, 320, str(tmp_path), model_type="bpe")
    assert tok.vocab_size <= 320
    assert all(tok.decode(tok.encode(text)) == text for text in ROUND_TRIP_TEXTS)


def test_sentencepiece_literal_sep_text_stays_text(spm_tok):
    ids = spm_tok.encode("a <sep> b")
    assert spm_tok.sep_id not in ids
    assert spm_tok.decode(ids) == "a <sep> b"


def test_sentencepiece_documented_exception_the_space_marker(spm_tok):
    # U+2581 is SentencePiece's own stand-in for a space (see the class docstring).
    assert spm_tok.decode(spm_tok.encode("a\u2581b")) == "a b"


def test_sentencepiece_out_of_range_ids_decode_as_unk(spm_tok):
    ids = spm_tok.encode("red") + [spm_tok.vocab_size + 7, -3]
    assert spm_tok.decode(ids) == spm_tok.decode(spm_tok.encode("red") + [spm_tok.unk_id] * 2)


@pytest.mark.parametrize("pad_id, expected", [(-1, "no 'pad' special token"), (3, None)])
def test_sentencepiece_foreign_model(tmp_path, pad_id, expected):
    """A .model trained elsewhere: a missing special is named; a missing <sep> falls back to eos."""
    import sentencepiece as spm
    path = str(tmp_path / "foreign.model")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=path[:-len(".model")],
                                   vocab_size=60, pad_id=pad_id, unk_id=0, bos_id=1, eos_id=2,
                                   hard_vocab_limit=False, minloglevel=2)
    if expected:
        with pytest.raises(DataError, match=re.escape(path) + ".*" + expected):
            SentencePieceTokenizer(path)
    else:
        tok = SentencePieceTokenizer(path)
        assert tok.sep_id == tok.eos_id == 2 and tok.pad_id == 3
        assert tok.decode(tok.encode("a red circle") + [tok.sep_id]) == "a red circle"


def test_sentencepiece_vocab_too_small_names_the_model_file(tmp_path):
    with pytest.raises(DataError, match="spm.model.*vocab_size=100"):
        train_sentencepiece(CORPUS, 100, str(tmp_path))


# --------------------------------------------------------------------------- hf

def test_hf_gpt2_style_falls_back_to_endoftext(tmp_path, gpt2_json):
    pure_gpt2 = HFTokenizer(byte_level_bpe_json(tmp_path, ["<|endoftext|>"]))
    end = 0  # the trainer gives special tokens the first ids, in the order listed
    assert pure_gpt2.special_ids == dict.fromkeys(["pad", "bos", "eos", "unk", "sep"], end)
    with_pad = HFTokenizer(gpt2_json)  # a better pad than <|endoftext|> exists: it wins
    assert with_pad.pad_id == 1 and with_pad.bos_id == with_pad.eos_id == with_pad.unk_id == with_pad.sep_id == 0


def test_hf_bert_style_specials(bert_json):
    tok = HFTokenizer(bert_json)
    vocab = hf.Tokenizer.from_file(bert_json).get_vocab()
    assert tok.special_tokens == {"pad": "[PAD]", "bos": "[CLS]", "eos": "[SEP]", "unk": "[UNK]", "sep": "[SEP]"}
    assert tok.special_ids == {"pad": vocab["[PAD]"], "bos": vocab["[CLS]"], "eos": vocab["[SEP]"],
                               "unk": vocab["[UNK]"], "sep": vocab["[SEP]"]}
    assert len({tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id}) == 4


def test_hf_bert_round_trip_of_text_it_can_represent(bert_json):
    tok = HFTokenizer(bert_json)
    text = "a small red circle above a large blue square."  # lowercase, in-vocabulary
    ids = tok.encode(text)
    assert tok.bos_id not in ids and tok.eos_id not in ids  # encode adds no [CLS]/[SEP]
    assert tok.decode([tok.bos_id, *ids, tok.sep_id, tok.pad_id]) == text


def test_hf_special_strings_in_text_are_plain_text(gpt2_json):
    tok = HFTokenizer(gpt2_json)
    ids = tok.encode("before<|endoftext|>after")
    assert tok.eos_id not in ids
    assert tok.decode(ids) == "before<|endoftext|>after"


def test_hf_overrides_survive_save_and_load(bert_json, tmp_path):
    tok = HFTokenizer(bert_json, bos="[MASK]")
    tok.save(str(tmp_path))
    with open(tmp_path / "tokenizer_config.json") as f:
        assert json.load(f)["special_tokens"]["bos"] == "[MASK]"
    assert load_tokenizer(str(tmp_path)).bos_id == hf.Tokenizer.from_file(bert_json).token_to_id("[MASK]")


def test_hf_missing_special_names_file_and_special(tmp_path):
    path = wordpiece_json(tmp_path, special_tokens=("[UNK]", "[CLS]", "[SEP]"))  # no [PAD]
    with pytest.raises(DataError) as info:
        HFTokenizer(path)
    message = str(info.value)
    assert path in message and "'pad'" in message and "\n" not in message
    assert HFTokenizer(path, pad="[UNK]").pad_id == HFTokenizer(path, pad="[UNK]").unk_id  # an override fixes it


def test_hf_override_token_must_exist(bert_json):
    with pytest.raises(DataError, match="'bos'.*<nope>|<nope>.*'bos'"):
        HFTokenizer(bert_json, bos="<nope>")


# --------------------------------------------------------------------------- make_tokenizer

def test_make_tokenizer_specs(spm_tok, gpt2_json, bert_json, tmp_path):
    text = CORPUS[1]
    assert isinstance(make_tokenizer("byte"), ByteTokenizer)
    assert make_tokenizer(f"sentencepiece:{spm_tok.model_path}").encode(text) == spm_tok.encode(text)
    assert make_tokenizer(f"sentencepiece:{os.path.dirname(spm_tok.model_path)}").encode(text) == spm_tok.encode(text)
    assert make_tokenizer(f"hf:{gpt2_json}").encode(text) == HFTokenizer(gpt2_json).encode(text)
    # A model folder holding tokenizer.json next to a transformers-style tokenizer_config.json.
    model_dir = os.path.dirname(bert_json)
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512}, f)
    assert make_tokenizer(f"hf:{model_dir}").special_ids == HFTokenizer(bert_json).special_ids
    spm_tok.save(str(tmp_path))
    assert isinstance(make_tokenizer(f"sentencepiece:{tmp_path}"), SentencePieceTokenizer)


@pytest.mark.parametrize("spec", ["bpe", "wordpiece:/x", "", "/definitely/not/a/dir"])
def test_make_tokenizer_unknown_spec(spec):
    with pytest.raises(DataError) as info:
        make_tokenizer(spec)
    assert f"unknown tokenizer spec {spec!r}" in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_tokenizer_in_the_config_names_the_key():
    import ml_collections

    from sora_jax.data.loader import tokenizer_from_config
    with pytest.raises(DataError, match=r"^config key data.tokenizer: unknown tokenizer spec 'bpe'"):
        tokenizer_from_config(ml_collections.ConfigDict({"tokenizer": "bpe"}))


@pytest.mark.parametrize("kind", ["sentencepiece", "hf"])
def test_make_tokenizer_missing_file_names_the_path(kind, tmp_path):
    missing = str(tmp_path / "nowhere" / "tok.file")
    with pytest.raises(DataError, match=re.escape(missing)):
        make_tokenizer(f"{kind}:{missing}")
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):  # an empty folder has no tokenizer file either
        make_tokenizer(f"{kind}:{tmp_path}")


def test_make_tokenizer_kind_mismatch(tmp_path):
    ByteTokenizer().save(str(tmp_path))
    with pytest.raises(DataError, match="'byte' tokenizer, not 'hf'"):
        make_tokenizer(f"hf:{tmp_path}")


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        load_tokenizer(str(tmp_path))
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(bad))):
        HFTokenizer(str(bad))
    with pytest.raises(DataError, match=re.escape(str(bad))):
        SentencePieceTokenizer(str(bad))


def test_load_refuses_files_that_disagree_with_the_config(spm_tok, tmp_path):
    spm_tok.save(str(tmp_path))
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["special_ids"]["sep"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(DataError, match="disagree"):
        load_tokenizer(str(tmp_path))
