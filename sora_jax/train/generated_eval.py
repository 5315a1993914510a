"""The periodic eval's generated outputs: the first train.eval_generate_batches eval batches of
each caption / seq2seq / VQA component are decoded greedily from BOS on the training backend
(sharded on the trainer's mesh under the jit backend) and scored as `python -m
sora_jax.evaluate` scores them (sora_jax.eval.generated)."""

from __future__ import annotations

from sora_jax.data.loader import components_config
from sora_jax.eval import generated
from sora_jax.infer.text import Decoding


class GeneratedEval:
    def __init__(self, model, tokenizer, tasks: dict, batches: int, max_len: int, decoding=None):
        """tasks: component name -> task; batches: per component (-1: all); decoding: greedy by default."""
        self.tok, self.tasks, self.batches = tokenizer, tasks, batches
        self._fn = generated.make_generate_fn(model, tokenizer, max_len, decoding or Decoding())
        self._texts = {}

    @classmethod
    def create(cls, config, model, tokenizer):
        """None when train.eval_generate_batches is 0 or no component generates text."""
        batches = config.train.get("eval_generate_batches", 0)
        tasks = {name: entry["task"] for name, entry in components_config(config.data).items()
                 if entry["task"] in generated.GENERATED}
        if not batches or not tasks:
            return None
        max_len = min(model.cfg.decoder.max_len, config.data.decoder_len + 1)  # BOS + the longest target
        return cls(model, tokenizer, tasks, batches, max_len)

    def wants(self, name: str, batch_index: int | None = None) -> bool:
        if name not in self.tasks:
            return False
        return batch_index is None or self.batches < 0 or batch_index < self.batches

    def add(self, name, backend, state, host_batch, device_batch):
        if backend.name == "pmap":  # replicated state: decode this process's rows on its first device
            params, inputs = backend.host_state(state).params, generated.generation_inputs(host_batch)
        else:
            params, inputs = state.params, generated.generation_inputs(device_batch)
        hypotheses, references = generated.texts(self.tok, backend.run(self._fn, params, inputs))
        done = self._texts.setdefault(name, ([], []))
        done[0].extend(hypotheses)
        done[1].extend(references)

    def results(self, name: str) -> dict:
        """The component's scores (name/exact_match, name/bleu, ...); forgets its texts."""
        hypotheses, references = self._texts.pop(name, ([], []))
        return {f"{name}/{key}": value for key, value in
                generated.score(self.tasks[name], hypotheses, references).items()}
