"""The run report (`python -m sora_jax.report --workdir=DIR`): curves, metrics and what the model
does, as DIR/report.md and a self-contained DIR/report.html."""
