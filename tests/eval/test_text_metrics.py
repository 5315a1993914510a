"""Text metrics against values computed by hand."""

import math

import pytest

from sora_jax.eval import text_metrics


def test_bleu_against_a_hand_computed_value():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths (no brevity penalty).
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert text_metrics.bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-6)
    assert text_metrics.bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(100.0)
    assert text_metrics.bleu(["x y z w"], ["a b c d"]) == pytest.approx(0.0)


def test_rouge_against_hand_computed_values():
    scores = text_metrics.rouge(["the cat sat", "a dog"], ["the cat sat on", "a dog"])
    # Pair 1: ROUGE-1 P 1, R 3/4; ROUGE-2 P 1, R 2/3; ROUGE-L as ROUGE-1. Pair 2: all 1.
    f = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert scores["rouge1"] == pytest.approx((f(1, 3 / 4) + 1) / 2)
    assert scores["rouge2"] == pytest.approx((f(1, 2 / 3) + 1) / 2)
    assert scores["rougeL"] == pytest.approx((f(1, 3 / 4) + 1) / 2)


def test_exact_match_and_perplexity():
    assert text_metrics.exact_match(["red ", "two", "no"], ["red", "three", "no"]) == pytest.approx(2 / 3)
    assert text_metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
