"""grain pipelines: determinism, process shares, resumable iterators, mixtures, skip counts, eval."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from sora_jax.data import loader
from sora_jax.data.config import data_config
from sora_jax.data.errors import DataError
from sora_jax.data.pipeline import Component, evaluation_dataset, training_dataset
from sora_jax.data.schema import ExampleSpec
from sora_jax.data.tasks import make_builder
from sora_jax.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
SPEC = ExampleSpec(text_len=12, decoder_len=8)  # "doc 123" fits with bos and eos


def numbered(n, bad=()):
    """Records "doc i" (their text says which record they are); indices in `bad` have empty text."""
    return [{"source": f"doc {i}", "target": "" if i in bad else f"t{i}", "_file": "mem.jsonl", "_record": i + 1}
            for i in range(n)]


def component(records, name="docs", weight=1.0, task="seq2seq"):
    return Component(name, records, make_builder(task, SPEC, TOK), weight)


def record_ids(batch):
    """Which records a batch holds (decoded from the source text)."""
    return [int(TOK.decode(t).split()[1]) for t, w in zip(batch["text"], batch["weight"]) if w > 0]


def take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def assert_resumes_exactly(make_dataset, consumed, compared):
    """Consume `consumed` batches, save the state, and check that a fresh iterator restored from
    it yields the next `compared` batches exactly."""
    it = iter(make_dataset())
    for _ in range(consumed):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(compared)]
    resumed = iter(make_dataset())
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_same_seed_same_batches_and_epochs_reshuffle():
    comp = component(numbered(20))
    a = take(training_dataset([comp], SPEC, batch_size=4, seed=3), 10)
    b = take(training_dataset([comp], SPEC, batch_size=4, seed=3), 10)
    c = take(training_dataset([comp], SPEC, batch_size=4, seed=4), 10)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    order_a = sum((record_ids(x) for x in a), [])
    assert order_a != sum((record_ids(x) for x in c), [])
    first, second = order_a[:20], order_a[20:40]
    assert sorted(first) == list(range(20)) and sorted(second) == list(range(20))  # whole epochs
    assert first != second  # reshuffled each epoch


@pytest.mark.parametrize("count", [2, 3])
def test_process_shares_are_disjoint_and_cover_the_data(count):
    comp = component(numbered(30))
    seen = []
    for index in range(count):
        epoch = take(training_dataset([comp], SPEC, batch_size=5, seed=0, process_index=index,
                                      process_count=count), 30 // count // 5)
        seen.append(set(sum((record_ids(b) for b in epoch), [])))
    assert set().union(*seen) == set(range(30))
    assert sum(len(s) for s in seen) == 30


@pytest.mark.parametrize("mixture", [False, True])
def test_restored_iterator_continues_with_exactly_the_next_batch(mixture):
    comps = [component(numbered(13))]
    if mixture:
        comps.append(component([{"source": f"doc {100 + i}", "target": "x"} for i in range(7)], "other", 0.5))
    assert_resumes_exactly(lambda: training_dataset(comps, SPEC, batch_size=3, seed=1), 6, 8)  # mid-epoch


def test_mixture_follows_its_weights_deterministically():
    a = component(numbered(50), "a", 3.0)
    b = component([{"source": f"doc {100 + i}", "target": "x"} for i in range(50)], "b", 1.0)
    batches = take(training_dataset([a, b], SPEC, batch_size=8, seed=0), 25)
    ids = sum((record_ids(x) for x in batches), [])
    share_a = np.mean([i < 100 for i in ids])
    assert 0.7 < share_a < 0.8, share_a
    again = sum((record_ids(x) for x in take(training_dataset([a, b], SPEC, batch_size=8, seed=0), 25)), [])
    assert ids == again


def test_bad_records_raise_with_their_place_or_are_skipped_and_counted_exactly():
    bad = {3, 11, 12}
    records = numbered(20, bad=bad)
    with pytest.raises(DataError, match=r"mem.jsonl:(4|12|13): field 'target': empty text"):
        take(training_dataset([component(records)], SPEC, batch_size=4, seed=0), 5)
    batches = take(training_dataset([component(records)], SPEC, batch_size=4, seed=0, on_error="skip"), 30)
    kept = sum((record_ids(b) for b in batches), [])
    skips = np.concatenate([b["num_skipped"] for b in batches])
    assert not bad & set(kept)
    # Replay the same shuffle with every record valid: the reading order is the same, so the exact
    # number of bad records read before each kept one is known.
    order = sum((record_ids(b) for b in take(training_dataset([component(numbered(20))], SPEC, batch_size=4,
                                                                         seed=0), 60)), [])
    expected, pending = [], 0
    for i in order:
        if i in bad:
            pending += 1
        else:
            expected.append(pending)
            pending = 0
    assert kept == [i for i in order if i not in bad][:len(kept)]
    np.testing.assert_array_equal(skips, expected[:len(kept)])
    assert skips.sum() >= 3 * (len(kept) // 17)


@pytest.mark.parametrize("count", [1, 2])
def test_evaluation_covers_every_record_once_with_padding(count):
    comp = component(numbered(11, bad={4}))
    seen, lengths = [], []
    for index in range(count):
        batches = list(evaluation_dataset(comp, SPEC, batch_size=4, process_index=index, process_count=count,
                                          on_error="skip"))
        lengths.append(len(batches))
        seen += sum((record_ids(b) for b in batches), [])
        skipped = sum(int(b["num_skipped"].sum()) for b in batches)
        assert skipped == (1 if 4 % count == index else 0)
    assert sorted(seen) == [i for i in range(11) if i != 4]
    assert len(set(lengths)) == 1  # every process runs the same number of eval steps


def _config(**data):
    cfg = ml_collections.ConfigDict({"seed": 0, "data": data_config()})
    cfg.data.update(data)
    return cfg


def test_loader_builds_every_bundled_task():
    for name, task in [("shapes", "caption"), ("shapes", "vqa"), ("shapes", "classify"), ("shapes", "t2i"),
                       ("shapes", "inpaint"), ("digits", "classify"), ("shakespeare", "lm"), ("chat", "seq2seq")]:
        cfg = _config(name=name, task=task, batch_size=4, image_size=16, text_len=16, decoder_len=16)
        batch = next(iter(loader.train_dataset(cfg, TOK)))
        assert batch["weight"].sum() == 4, (name, task)
        assert batch["image"].shape == (4, 16, 16, 3)


def test_loader_mixture_and_config_errors():
    cfg = _config(name="mixture", batch_size=6, image_size=16)
    cfg.data.mixture = ml_collections.ConfigDict({
        "captions": {"dataset": "shapes", "task": "caption", "weight": 2.0},
        "plays": {"dataset": "shakespeare", "task": "lm", "weight": 1.0}})
    batch = next(iter(loader.train_dataset(cfg, TOK)))
    assert set(batch["task_id"].tolist()) <= {0, 3}
    with pytest.raises(DataError, match="supports tasks lm, not 'caption'"):
        loader.train_dataset(_config(name="shakespeare", task="caption"), TOK)
    with pytest.raises(DataError, match="unknown dataset 'shape'"):
        loader.train_dataset(_config(name="shape"), TOK)
    with pytest.raises(DataError, match="config key data.batch_size: 10 is not divisible by the 3 processes"):
        loader.train_dataset(_config(batch_size=10), TOK, process_count=3)
    with pytest.raises(DataError, match="data.validation_path is empty"):
        loader.eval_datasets(_config(name="jsonl", task="seq2seq"), TOK)


def test_worker_processes_are_deterministic_and_resumable():
    cfg = _config(name="shapes", task="caption", batch_size=4, image_size=16, num_workers=2)
    first = take(loader.train_dataset(cfg, TOK), 3)
    for want, got in zip(first, take(loader.train_dataset(cfg, TOK), 3)):
        np.testing.assert_array_equal(got["image"], want["image"])
    assert_resumes_exactly(lambda: loader.train_dataset(cfg, TOK), 3, 1)


_WORKER_BATCHES_THEN_EXIT = """
import os, sys
from tests.data.test_pipeline import TOK, _config
from sora_jax.data import loader, pipeline
cfg = _config(name="shapes", task="caption", batch_size=4, image_size=16, num_workers=int(sys.argv[1]))
it = iter(loader.train_dataset(cfg, TOK))
batches = [next(it) for _ in range(3)]
# The arrays the workers sent live in shared memory (other tests may be using /dev/shm too).
names = {a.shm.name for b in batches for a in b.values() if getattr(a, "shm", None) is not None}
assert names
pipeline.close_training_iterator(it)
del batches, it
print("still in /dev/shm:", sum(os.path.exists(os.path.join("/dev/shm", n)) for n in names))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_closing_a_worker_iterator_frees_every_batch_before_exit(workers):
    """Nothing is left for Python's resource tracker to warn about ("leaked shared_memory
    objects") when the process exits: google/grain#398, seen at the end of `make demo`."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _WORKER_BATCHES_THEN_EXIT, str(workers)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "still in /dev/shm: 0" in done.stdout
    assert "leaked" not in done.stderr, done.stderr[-2000:]


def test_randomness_depends_on_the_record_not_the_process_layout():
    spec = ExampleSpec(text_len=12, image_size=16)
    image = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    records = [{"image": image, "caption": f"doc {i}"} for i in range(12)]
    comp = Component("imgs", records, make_builder("inpaint", spec, TOK))

    def masks_by_record(process_count):
        out = {}
        for index in range(process_count):
            for batch in take(training_dataset([comp], spec, batch_size=2, seed=0, process_index=index,
                                               process_count=process_count), 12 // process_count // 2):
                for text, mask in zip(batch["text"], batch["inpaint_mask"]):
                    out[int(TOK.decode(text).split()[1])] = mask
        return out

    one, two = masks_by_record(1), masks_by_record(2)
    assert sorted(one) == sorted(two) == list(range(12))
    for r in range(12):
        np.testing.assert_array_equal(one[r], two[r])
    assert not np.array_equal(one[0], one[1])
    evals = [sum((list(b["inpaint_mask"][b["weight"] > 0]) for i in range(n) for b in
                  evaluation_dataset(comp, spec, batch_size=4, process_index=i, process_count=n)), [])
             for n in (1, 2)]
    assert len(evals[0]) == len(evals[1]) == 12


def test_every_record_bad_is_an_error_not_a_hang():
    with pytest.raises(DataError, match=r"all 10 records of this process's share are bad; the last: .*empty text"):
        take(training_dataset([component(numbered(10, bad=set(range(10))))], SPEC, batch_size=2, seed=0,
                              on_error="skip"), 1)


def test_unexpected_exceptions_are_reported_with_their_record():
    spec = ExampleSpec(decoder_len=8)
    comp = Component("windows", [{"ids": "not numbers", "_file": "w.jsonl", "_record": 4}],
                     make_builder("lm", spec, TOK))
    with pytest.raises(DataError, match=r"^w.jsonl:4: ValueError"):
        take(training_dataset([comp], spec, batch_size=1, seed=0), 1)


def test_a_process_without_records_is_an_error():
    with pytest.raises(DataError, match="no records for process 2 of 3"):
        training_dataset([component(numbered(2))], SPEC, batch_size=1, seed=0, process_index=2, process_count=3)


def test_an_empty_file_is_named(tmp_path):
    from sora_jax.data.sources import JsonlSource
    (tmp_path / "empty.jsonl").write_text("")
    comp = Component("train", JsonlSource(str(tmp_path / "empty.jsonl")), make_builder("lm", SPEC, TOK))
    with pytest.raises(DataError, match=rf"^{tmp_path}/empty.jsonl: train: no records for process 0 of 1"):
        training_dataset([comp], SPEC, batch_size=1, seed=0)


def test_uneven_process_shares_over_two_epochs():
    comp = component(numbered(7))
    for count in (2, 3):
        seen = []
        for index in range(count):
            share = len(range(index, 7, count))
            batches = take(training_dataset([comp], SPEC, batch_size=1, seed=5, process_index=index,
                                            process_count=count), 2 * share)
            ids = sum((record_ids(b) for b in batches), [])
            assert sorted(ids[:share]) == sorted(ids[share:])  # each epoch is the same share
            seen += ids[:share]
        assert sorted(seen) == list(range(7))


def test_long_documents_continue_in_the_next_packed_rows_and_packing_resumes():
    spec = ExampleSpec(decoder_len=12)
    text = "abcdefghijklmnopqrstuvwxyz0123"  # 32 tokens with bos/eos: three rows' worth
    comp = Component("doc", [{"text": text}, {"text": "xy"}], make_builder("lm", spec, TOK, pack=True))
    rows = take(training_dataset([comp], spec, batch_size=1, seed=0), 12)
    segments = set()
    for r in rows:
        seg, inputs = r["decoder_segment_ids"][0], r["decoder_inputs"][0]
        segments |= {TOK.decode(inputs[seg == s]) for s in range(1, seg.max() + 1)}
    # The document is cut into rows of 12 ([bos] + 11 characters, 12, the rest) and none is lost.
    assert {text[:11], text[11:23], text[23:]} <= segments
    assert_resumes_exactly(lambda: training_dataset([comp], spec, batch_size=1, seed=0), 5, 6)


def test_loader_evaluates_packed_lm_configs_and_tiles_shakespeare():
    cfg = _config(name="shakespeare", task="lm", pack=True, batch_size=4, eval_batch_size=64, image_size=0,
                  text_len=0, decoder_len=64)
    evals = loader.eval_datasets(cfg, TOK)
    first = evals["shakespeare/lm"][0]
    assert first["decoder_mask"].sum() == 64 * 64
    # Windows start at offset 0 in evaluation: consecutive rows continue the text exactly.
    np.testing.assert_array_equal(first["decoder_inputs"][1][0], first["decoder_targets"][0][-1])


def test_shapes_classification_is_image_only():
    cfg = _config(name="shapes", task="classify", batch_size=4, image_size=16)
    batch = next(iter(loader.train_dataset(cfg, TOK)))
    assert not batch["text_valid"].any() and batch["image_present"].all() and (batch["label"] >= 0).all()


def test_sentencepiece_trained_at_startup_is_saved_and_reused(tmp_path):
    cfg = _config(name="chat", task="seq2seq", tokenizer="sentencepiece:train", vocab_size=400)
    tok = loader.tokenizer_from_config(cfg.data, str(tmp_path))
    assert tok.kind == "sentencepiece" and tok.vocab_size <= 400
    saved = sorted(os.listdir(tmp_path / "tokenizer"))
    again = loader.tokenizer_from_config(cfg.data, str(tmp_path), process_index=1)  # loads, no training
    assert again.encode("hello there") == tok.encode("hello there")
    assert sorted(os.listdir(tmp_path / "tokenizer")) == saved
    with pytest.raises(DataError, match="did not save the trained tokenizer"):
        loader.tokenizer_from_config(cfg.data, str(tmp_path / "other"), process_index=1, wait_seconds=0.1)

    # Another vocabulary size: before any checkpoint (an attempt that failed in set-up), the stale
    # tokenizer is trained again, not silently reused.
    cfg.data.vocab_size = 500
    with pytest.raises(DataError, match="did not save"):  # the other processes wait for process 0's
        loader.tokenizer_from_config(cfg.data, str(tmp_path), process_index=1, wait_seconds=0.1)
    larger = loader.tokenizer_from_config(cfg.data, str(tmp_path))
    assert tok.vocab_size < larger.vocab_size <= 500
    assert sorted(os.listdir(tmp_path)) == ["tokenizer"]  # no partial or stale folder left
    # Once checkpoints use it, a tokenizer setting that differs is refused, naming the key.
    os.makedirs(tmp_path / "checkpoints" / "10")
    cfg.data.vocab_size = 400
    for process in (0, 1):
        with pytest.raises(DataError, match=r"config key data.vocab_size: 400 differs from the 500 that .* was trained"):
            loader.tokenizer_from_config(cfg.data, str(tmp_path), process_index=process, wait_seconds=0.1)
    cfg.data.vocab_size = 500
    assert loader.tokenizer_from_config(cfg.data, str(tmp_path)).encode("hi there") == larger.encode("hi there")
    cfg.data.sentencepiece_type = "unigram"  # another type, checkpoints present: kept (they use it), not retrained
    assert loader.tokenizer_from_config(cfg.data, str(tmp_path)).encode("hi there") == larger.encode("hi there")


_TRAIN_IN_A_FRESH_PROCESS = """
import hashlib, sys
from tests.data.test_pipeline import _config
from sora_jax.data import loader
cfg = _config(name="chat", task="seq2seq", tokenizer="sentencepiece:train", vocab_size=400,
              sentencepiece_type="unigram")
loader.tokenizer_from_config(cfg.data, sys.argv[1])
print(hashlib.sha256(open(sys.argv[1] + "/tokenizer/spm.model", "rb").read()).hexdigest())
"""


def test_sentencepiece_trained_at_startup_is_the_same_in_every_process(tmp_path):
    """Processes with different string hash seeds (each Python process draws its own) train the
    same bytes: unigram training depends on the order of its texts, which must not follow a set's."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    models = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
        done = subprocess.run([sys.executable, "-c", _TRAIN_IN_A_FRESH_PROCESS, str(tmp_path / hash_seed)], env=env,
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        models.add(done.stdout.split()[-1])
    assert len(models) == 1, models


def test_sentencepiece_type_bpe_keeps_the_shapes_words_whole_and_a_bad_type_names_its_key(tmp_path):
    """Unigram on the templated shapes texts stops at ~60 pieces and spells words letter by
    letter; the default BPE gives one piece per word."""
    cfg = _config(name="shapes", task="vqa", tokenizer="sentencepiece:train", vocab_size=512)
    cfg.data.shapes.num_train = 2000
    assert cfg.data.sentencepiece_type == "bpe"
    tok = loader.tokenizer_from_config(cfg.data, str(tmp_path / "bpe"))
    caption = "a small red circle above a large blue square"
    assert [tok.decode([i]).strip() for i in tok.encode(caption)] == caption.split()
    assert len(tok.encode("what shape is the purple object?")) == 7  # six words and "?"
    cfg.data.sentencepiece_type = "unigram"
    unigram = loader.tokenizer_from_config(cfg.data, str(tmp_path / "unigram"))
    assert len(unigram.encode(caption)) > len(caption.split())  # what the default avoids
    cfg.data.sentencepiece_type = "wordpiece"
    with pytest.raises(DataError, match="data.sentencepiece_type.*bpe, unigram"):
        loader.tokenizer_from_config(cfg.data, str(tmp_path / "bad"))


def test_workers_with_a_mixture_resume_exactly():
    cfg = _config(name="mixture", batch_size=4, image_size=16, num_workers=2)
    cfg.data.mixture = ml_collections.ConfigDict({
        "captions": {"dataset": "shapes", "task": "caption", "weight": 1.0},
        "chat": {"dataset": "chat", "task": "seq2seq", "weight": 1.0}})
    assert_resumes_exactly(lambda: loader.train_dataset(cfg, TOK), 3, 3)
