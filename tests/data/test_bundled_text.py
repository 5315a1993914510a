"""The bundled text corpora: Shakespeare (tiny-shakespeare sized) and chatterbot conversations."""

import numpy as np

from sora_jax.data.datasets.chat import ChatSource, all_pairs
from sora_jax.data.datasets.shakespeare import CORPUS_CHARS, ShakespeareSource, corpus_text, split_text
from sora_jax.data.tokenizers import ByteTokenizer


def test_shakespeare_corpus_and_splits():
    text = corpus_text()
    assert len(text) == CORPUS_CHARS == 1_115_394
    train, val = split_text("train"), split_text("validation")
    assert len(train) == 1_003_854 and len(val) == 111_540 and train + val == text
    assert text.startswith("ALL'S WELL THAT ENDS WELL")  # sorted file names: alls_well_that_ends_well_gut.txt


def test_shakespeare_windows_cover_the_split():
    tok = ByteTokenizer()
    src = ShakespeareSource("validation", tok, window_len=64)
    ids = np.asarray(tok.encode(split_text("validation")))
    assert len(src) == (len(ids) - 129) // 64 + 1
    np.testing.assert_array_equal(src[3]["ids"], ids[192:192 + 129])
    last = src[len(src) - 1]["ids"]
    assert len(last) == 129


def test_chat_pairs_and_split():
    pairs = all_pairs()
    train, val = ChatSource("train"), ChatSource("validation")
    assert len(train) + len(val) == len(pairs) > 2000
    assert abs(len(val) - len(pairs) / 10) <= 1
    record = train[0]
    assert record["prompt"] and record["reply"] and record["topic"]
    assert {val[i]["prompt"] + val[i]["reply"] for i in range(len(val))} != set()
