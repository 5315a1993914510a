"""What a trained run does, for the report: validation scenes with the model's captions, answers
and class, a Shakespeare continuation, a chat transcript, and the generator's images. Every part
is produced only when the run was trained for it."""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np

from sora_jax.data.datasets import open_dataset
from sora_jax.data.loader import components_config
from sora_jax.infer.chat import ChatSession
from sora_jax.infer.text import Decoding, TextTasks

CHAT_LINES = ("hello", "how are you?", "what is your name?", "do you like music?")
LM_PROMPT = "ROMEO:\n"


@dataclasses.dataclass
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    caption: str
    question: str
    answer: str
    label: str
    predicted_caption: str = ""
    predicted_answer: str = ""
    predicted_label: str = ""


@dataclasses.dataclass
class Showcase:
    scenes: list = dataclasses.field(default_factory=list)
    continuation: tuple | None = None  # (prompt, generated text)
    chat: list = dataclasses.field(default_factory=list)  # (speaker, line)
    samples: dict = dataclasses.field(default_factory=dict)  # kind ("t2i", "inpaint") -> PNG path
    prompts: tuple = ()  # the t2i grid's prompts, one per row


def _datasets(config, task):
    return {entry["dataset"] for entry in components_config(config.data).values() if entry["task"] == task}


def build(run, workdir: str, *, num_scenes: int = 8, lm_tokens: int = 200) -> Showcase:
    tasks = TextTasks(run)
    show = Showcase()
    trained = tasks.trained
    if num_scenes > 0 and trained & {"caption", "vqa", "classify"} and "shapes" in set().union(
            *(_datasets(run.config, t) for t in ("caption", "vqa", "classify"))):
        show.scenes = _scenes(run, tasks, num_scenes)
    if "lm" in trained:
        sampled = Decoding(temperature=0.8, top_k=20, seed=0, max_new_tokens=lm_tokens)
        show.continuation = (LM_PROMPT, tasks("complete", [{"prompt": LM_PROMPT}], sampled)[0])
    if "chat" in _datasets(run.config, "seq2seq"):
        session = ChatSession(tasks, Decoding())
        for line in CHAT_LINES:
            show.chat += [("you", line), ("model", session.reply(line))]
    for kind in ("t2i", "inpaint"):
        written = sorted(glob.glob(os.path.join(workdir, "samples", f"{kind}_*.png")))
        if written:
            show.samples[kind] = written[-1]  # the newest: the final evaluation's
    if "t2i" in show.samples:
        show.prompts = tuple(run.config.gan.sample_prompts)
    return show


def _scenes(run, tasks, n) -> list[Scene]:
    source, _, _ = open_dataset("shapes", "validation", run.config.data, run.tokenizer)
    records = [source[i] for i in range(min(n, len(source)))]
    first_qa = [r["qa"][0] if r["qa"] else ("", "") for r in records]
    scenes = [Scene(np.asarray(r["image"], np.uint8), r["caption"], question, answer, r["label_name"])
              for r, (question, answer) in zip(records, first_qa)]
    images = [{"image": r["image"]} for r in records]
    if "caption" in tasks.trained:
        for scene, text in zip(scenes, tasks("caption", images)):
            scene.predicted_caption = text
    if "vqa" in tasks.trained:
        asked = [dict(image, question=s.question) for image, s in zip(images, scenes) if s.question]
        answers = iter(tasks("vqa", asked)) if asked else iter(())
        for scene in scenes:
            if scene.question:
                scene.predicted_answer = next(answers)
    if "classify" in tasks.trained:
        for scene, label in zip(scenes, tasks("classify", images)):
            scene.predicted_label = label
    return scenes
