"""Inference: image sampling and inpainting from a trained run (text decoding: see issue 6)."""
