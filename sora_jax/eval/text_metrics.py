"""Text metrics over whole corpora: BLEU (sacrebleu), ROUGE-1/2/L F1 (rouge-score), exact match,
and perplexity from a mean token loss."""

from __future__ import annotations

import math


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's default 13a tokenisation, one reference per hypothesis."""
    import sacrebleu
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L over the pairs (rouge-score, no stemming)."""
    from rouge_score import rouge_scorer
    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=False)
    totals = dict.fromkeys(kinds, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(reference, hypothesis)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    n = max(len(hypotheses), 1)
    return {kind: total / n for kind, total in totals.items()}


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of hypotheses equal to their reference after stripping surrounding white space."""
    pairs = list(zip(hypotheses, references, strict=True))
    return sum(h.strip() == r.strip() for h, r in pairs) / max(len(pairs), 1)


def perplexity(mean_token_loss: float) -> float:
    return math.exp(min(mean_token_loss, 50.0))
