"""Evaluation: text metrics (BLEU, ROUGE, exact match, perplexity) and whole-run evaluation."""
