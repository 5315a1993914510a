"""A conversation with a seq2seq-trained run: each reply is generated from the latest turns
(user and model, oldest dropped first) that fit the text encoder's length, joined by newlines
as the encoder saw multi-turn text in training."""

from __future__ import annotations


class ChatSession:
    def __init__(self, tasks, decoding):
        """tasks: a sora_jax.infer.text.TextTasks (or anything with .tok, .spec.text_len and
        __call__(task, requests, decoding) -> replies)."""
        self.tasks, self.decoding = tasks, decoding
        self.history: list[str] = []
        self.limit = max(1, tasks.spec.text_len - 2)  # BOS and EOS take two of the encoder's positions

    def context(self) -> str:
        """The newest turns whose joined text fits the limit (always at least the last one, which
        the encoder then truncates); older turns are forgotten."""
        kept = []
        for turn in reversed(self.history):
            if kept and len(self.tasks.tok.encode("\n".join([turn] + kept))) > self.limit:
                break
            kept.insert(0, turn)
        self.history = kept
        return "\n".join(kept)

    def reply(self, line: str) -> str:
        self.history.append(line)
        answer = self.tasks("chat", [{"input": self.context()}], self.decoding)[0]
        self.history.append(answer)
        return answer
