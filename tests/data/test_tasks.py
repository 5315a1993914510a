"""Task builders on tiny hand-made records: token layout, masks, images, labels, packing."""

import numpy as np
import pytest

from sora_jax.data.errors import DataError
from sora_jax.data.inpaint_masks import make_mask
from sora_jax.data.pipeline import Component, training_dataset
from sora_jax.data.schema import TASKS, ExampleSpec
from sora_jax.data.tasks import make_builder
from sora_jax.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
SPEC = ExampleSpec(text_len=12, decoder_len=10, image_size=8)
IMAGE = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(16, 16, 3)
RNG = np.random.default_rng(0)


def ids(text):
    return TOK.encode(text)


def build(task, record, spec=SPEC, **options):
    partial = make_builder(task, spec, TOK, **options)(record, np.random.default_rng(0))
    return spec.complete(partial, task)


def test_lm_document_layout():
    ex = build("lm", {"text": "hello"})
    seq = [TOK.bos_id] + ids("hello") + [TOK.eos_id]  # 7 tokens -> 6 input/target pairs
    np.testing.assert_array_equal(ex["decoder_inputs"][:6], seq[:-1])
    np.testing.assert_array_equal(ex["decoder_targets"][:6], seq[1:])
    np.testing.assert_array_equal(ex["decoder_mask"], [1] * 6 + [0] * 4)
    np.testing.assert_array_equal(ex["decoder_segment_ids"], [1] * 6 + [0] * 4)
    np.testing.assert_array_equal(ex["decoder_positions"][:6], np.arange(6))
    assert ex["task_id"] == TASKS.index("lm") and ex["label"] == -1 and ex["weight"] == 1.0
    long = build("lm", {"text": "x" * 50})
    assert long["decoder_mask"].sum() == 10  # truncated to the decoder length


def test_lm_window_takes_a_random_cut_of_the_window():
    window = np.arange(100, 121, dtype=np.int32)  # 2 * 10 + 1 ids
    builder = make_builder("lm", SPEC, TOK)
    starts = set()
    for seed in range(20):
        ex = builder({"ids": window}, np.random.default_rng(seed))
        start = ex["decoder_inputs"][0] - 100
        np.testing.assert_array_equal(ex["decoder_inputs"], window[start:start + 10])
        np.testing.assert_array_equal(ex["decoder_targets"], window[start + 1:start + 11])
        starts.add(int(start))
    assert len(starts) > 3


def test_seq2seq_layout():
    ex = build("seq2seq", {"source": "hi", "target": "yo"})
    np.testing.assert_array_equal(ex["text"][:4], [TOK.bos_id] + ids("hi") + [TOK.eos_id])
    np.testing.assert_array_equal(ex["text_valid"], [True] * 4 + [False] * 8)
    np.testing.assert_array_equal(ex["decoder_inputs"][:3], [TOK.bos_id] + ids("yo"))
    np.testing.assert_array_equal(ex["decoder_targets"][:3], ids("yo") + [TOK.eos_id])
    assert not ex["image_present"]


def test_image_tasks_and_normalisation():
    cap = build("caption", {"image": IMAGE, "caption": ["a cat", "a dog"]})
    assert cap["image"].shape == (8, 8, 3) and cap["image"].dtype == np.float32
    assert -1.0 <= cap["image"].min() and cap["image"].max() <= 1.0 and cap["image_present"]
    assert TOK.decode(cap["decoder_targets"]) in ("a cat", "a dog")
    vqa = build("vqa", {"image": IMAGE, "qa": [["what?", "this"]]})
    assert TOK.decode(vqa["text"]) == "what?" and TOK.decode(vqa["decoder_targets"]) == "this"
    t2i = build("t2i", {"image": IMAGE, "caption": "a cat"})
    assert TOK.decode(t2i["text"]) == "a cat" and t2i["decoder_mask"].sum() == 0
    cls = build("classify", {"image": IMAGE, "label": 3}, num_classes=4)
    assert cls["label"] == 3 and cls["image_present"] and not cls["text_valid"].any()
    inp = build("inpaint", {"image": IMAGE, "caption": "a cat"})
    hole = inp["inpaint_mask"]
    assert hole.shape == (8, 8, 1) and 0 < hole.mean() < 1 and set(np.unique(hole)) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["box", "stroke"])
def test_inpaint_masks_are_seeded(kind):
    a = make_mask(np.random.default_rng(5), 32, kind)
    b = make_mask(np.random.default_rng(5), 32, kind)
    c = make_mask(np.random.default_rng(6), 32, kind)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and 0.02 < a.mean() < 0.6
    if kind == "box":  # one axis-aligned rectangle
        rows, cols = np.nonzero(a[..., 0])
        assert a[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_builders_check_the_spec():
    with pytest.raises(ValueError, match="data.image_size"):
        make_builder("caption", ExampleSpec(text_len=4, decoder_len=4), TOK)
    with pytest.raises(ValueError, match="data.decoder_len"):
        make_builder("lm", ExampleSpec(text_len=4), TOK)


def test_packing_keeps_documents_apart_with_segment_ids():
    docs = [{"text": t, "_file": "mem", "_record": i} for i, t in enumerate(["ab", "cde", "f", "ghij", "k"])]
    spec = ExampleSpec(decoder_len=12)
    builder = make_builder("lm", spec, TOK, pack=True)
    ds = training_dataset([Component("docs", docs, builder)], spec, batch_size=1, seed=0)
    it = iter(ds)
    rows = [next(it) for _ in range(4)]
    for row in rows:
        seg, pos = row["decoder_segment_ids"][0], row["decoder_positions"][0]
        inputs, targets, mask = row["decoder_inputs"][0], row["decoder_targets"][0], row["decoder_mask"][0]
        assert seg.max() >= 1
        for s in range(1, seg.max() + 1):
            span = np.nonzero(seg == s)[0]
            assert np.array_equal(span, np.arange(span[0], span[-1] + 1))  # contiguous
            np.testing.assert_array_equal(pos[span], np.arange(len(span)))  # positions restart per document
            assert inputs[span[0]] == TOK.bos_id and targets[span[-1]] == TOK.eos_id
            text = TOK.decode(inputs[span])
            assert text in {"ab", "cde", "f", "ghij", "k"}
        np.testing.assert_array_equal(mask, (seg > 0).astype(np.float32))
    assert max(r["decoder_segment_ids"].max() for r in rows) >= 2  # several documents in one row


@pytest.mark.parametrize("task,record,field,message", [
    ("caption", {"image": IMAGE}, "caption", "missing field"),
    ("caption", {"image": b"not an image", "caption": "x"}, "image", "undecodable image"),
    ("seq2seq", {"source": "  ", "target": "x"}, "source", "empty text"),
    ("classify", {"image": IMAGE, "label": "three"}, "label", "expected an integer class id"),
    ("classify", {"image": IMAGE, "label": 7}, "label", r"outside \[0, 4\)"),
    ("vqa", {"image": IMAGE, "qa": []}, "qa", "non-empty list"),
    ("lm", {"text": 5}, "text", "expected text, got int"),
])
def test_bad_records_name_file_record_and_field(task, record, field, message):
    record = {**record, "_file": "data/train.jsonl", "_record": 17}
    with pytest.raises(DataError, match=message) as err:
        make_builder(task, SPEC, TOK, num_classes=4)(record, RNG)
    assert str(err.value).startswith(f"data/train.jsonl:17: field '{field}'")
    assert "\n" not in str(err.value)
