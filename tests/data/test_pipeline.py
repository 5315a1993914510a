"""grain pipelines: determinism, process shares, resumable iterators, mixtures, skip counts, eval."""

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
    ds = training_dataset(comps, SPEC, batch_size=3, seed=1)
    it = iter(ds)
    for _ in range(6):  # mid-epoch
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(8)]
    resumed = iter(training_dataset(comps, SPEC, batch_size=3, seed=1))
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


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
    it = iter(loader.train_dataset(cfg, TOK))
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    expected = next(it)
    again = iter(loader.train_dataset(cfg, TOK))
    for want in first:
        np.testing.assert_array_equal(next(again)["image"], want["image"])
    resumed = iter(loader.train_dataset(cfg, TOK))
    resumed.set_state(state)
    got = next(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
