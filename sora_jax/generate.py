"""Generation from a trained run's checkpoint.

    python -m sora_jax.generate --workdir=DIR --task=caption --image=PATH [--beam=4]
    python -m sora_jax.generate --workdir=DIR --task=vqa --image=PATH --question="what color is the circle?"
    python -m sora_jax.generate --workdir=DIR --task=complete --prompt="ROMEO:" [--temperature=0.8 --top_p=0.9]
    python -m sora_jax.generate --workdir=DIR --task=seq2seq --input="..."
    python -m sora_jax.generate --workdir=DIR --task=classify [--text="..."] [--image=PATH]
    python -m sora_jax.generate --workdir=DIR --task=chat          (interactive; Ctrl-D exits)
    python -m sora_jax.generate --workdir=DIR --task=TASK --input_file=IN.jsonl --output_file=OUT.jsonl
    python -m sora_jax.generate --workdir=DIR --task=t2i --prompt="a red circle" --num=16 --out=grid.png
    python -m sora_jax.generate --workdir=DIR --task=inpaint --image=IN.png --mask=MASK.png \\
        --prompt="a handwritten seven" --out=OUT.png

Text tasks print one result per line (batch mode: each input line's JSON object, e.g.
{"image": "a.png", "question": "..."}, with an "output" added; image paths are relative to the
input file). Decoding: greedy by default; --temperature / --top_k / --top_p sample; --beam=K
is beam search (--length_penalty alpha); --seed fixes the draws.

t2i writes a grid of --num samples of the EMA generator (--columns per row). inpaint writes the
original, the masked input and the completion side by side; in MASK.png white (> 127) marks the
missing pixels. --step=N picks a checkpoint (default: the newest); --seed fixes the noise.
Bad input (missing workdir or checkpoint, unreadable image, a task the run was not trained for):
one line on stderr and exit code 2.
"""

from __future__ import annotations

import math
import os
import sys

from absl import flags
from absl import logging as absl_logging

from sora_jax.cli import fail as _fail, run_app

IMAGE_TASKS = ("t2i", "inpaint")
TASKS = ("caption", "vqa", "complete", "seq2seq", "classify", "chat") + IMAGE_TASKS
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_TASK = flags.DEFINE_enum("task", None, TASKS, "What to generate.")
_PROMPT = flags.DEFINE_string("prompt", "", "The text condition.")
_NUM = flags.DEFINE_integer("num", 16, "t2i: number of images.")
_COLUMNS = flags.DEFINE_integer("columns", 8, "t2i: images per grid row.")
_IMAGE = flags.DEFINE_string("image", None, "caption, vqa, classify: the image; inpaint: the image to complete.")
_MASK = flags.DEFINE_string("mask", None, "inpaint: white where pixels are missing.")
_QUESTION = flags.DEFINE_string("question", None, "vqa: the question.")
_INPUT = flags.DEFINE_string("input", None, "seq2seq: the source text.")
_TEXT = flags.DEFINE_string("text", None, "classify: the text.")
_INPUT_FILE = flags.DEFINE_string("input_file", None, "Batch mode: one JSON request per line.")
_OUTPUT_FILE = flags.DEFINE_string("output_file", None, "Batch mode: the requests with their outputs.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Batch mode: requests per batch.")
_BEAM = flags.DEFINE_integer("beam", 0, "Beam width (0: greedy or sampling).")
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 0.0, "Beam search: GNMT length penalty alpha.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0: greedy; > 0: sampling temperature.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sampling: keep the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sampling: nucleus probability mass.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 0, "Most tokens to generate (0: up to the context).")
_OUT = flags.DEFINE_string("out", None, "t2i / inpaint: output PNG.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_SEED = flags.DEFINE_integer("seed", 0, "Noise seed.")
_SCALE = flags.DEFINE_integer("scale", 4, "Each pixel enlarged this many times in the PNG.")
flags.mark_flags_as_required(["workdir", "task"])

class BadInput(ValueError):
    pass


def _read_image(path, flag, size, channels):
    from sora_jax.infer.images import load_image
    if not path:
        raise BadInput(f"--{flag} is required for --task=inpaint")
    if not os.path.exists(path):
        raise BadInput(f"--{flag}: {path} does not exist")
    try:
        return load_image(path, size, channels)
    except Exception as e:  # noqa: BLE001 - Pillow raises several types for bad files
        raise BadInput(f"--{flag}: cannot read {path} as an image ({type(e).__name__})") from None


def _check_image(path, flag):
    """Before the run is loaded: a file that is not an image is named with its flag."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as e:  # noqa: BLE001 - Pillow raises several types for bad files
        raise BadInput(f"--{flag}: cannot read {path} as an image ({type(e).__name__})") from None


def _check_same_size(image_path, mask_path):
    from PIL import Image
    with Image.open(image_path) as image, Image.open(mask_path) as mask:
        if image.size != mask.size:
            raise BadInput(f"--mask: {mask_path} is {mask.size[0]}x{mask.size[1]} pixels, --image {image_path} "
                           f"{image.size[0]}x{image.size[1]}: the mask must have the image's size")


def generate(run, task, *, prompt, num, columns, image_path=None, mask_path=None, seed=0, scale=4):
    """The uint8 picture the command writes."""
    import jax
    import numpy as np

    from sora_jax.infer.images import grid
    from sora_jax.train.gan_eval import inpaint_panels, prompt_rows

    gan = run.gan
    if gan is None:
        raise BadInput(f"--task={task}: the run at step {run.step} has no image generator (model.gan.enabled "
                       f"is False)")
    cfg = gan.cfg
    if task == "inpaint" and not cfg.inpaint:
        raise BadInput("--task=inpaint: the run's generator was trained for text-to-image only "
                       "(model.gan.inpaint is False)")
    if num <= 0 or columns <= 0:
        raise BadInput("--num and --columns must be positive")
    n = num if task == "t2i" else 1
    rows = prompt_rows(run.tokenizer, [prompt], n, run.config.data.text_len, cfg)
    if task == "inpaint":
        image = _read_image(image_path, "image", cfg.image_size, cfg.channels)
        mask = _read_image(mask_path, "mask", cfg.image_size, 1)
        _check_same_size(image_path, mask_path)  # each is resized to the model's size: a mismatch would stretch
        rows["image"] = image[None]
        rows["known"] = (mask[None] <= 0.0).astype(np.float32)  # white (> 127) = missing

    @jax.jit
    def sample(params, ema, z, text, valid, image, known):
        cond = gan.condition(params, {"text": text, "text_valid": valid})
        return gan.sample(ema, z, cond, image, known)

    z = jax.random.normal(jax.random.key(seed), (n, cfg.z_dim))
    out = np.asarray(sample(run.state.params, run.state.gan.ema_params, z, rows["text"], rows["text_valid"],
                            rows["image"], rows["known"]))
    if task == "t2i":
        return grid(out, min(columns, n), scale=scale)
    return grid(inpaint_panels(rows["image"], rows["known"], out), 3, scale=scale)


def _main(argv):
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax's INFO lines are not for this command
    task = _TASK.value
    try:
        _check_flags(task)
        if task in IMAGE_TASKS:
            _image_task(task)
        else:
            _text_task(task)
    except BadInput as e:
        _fail(str(e))


def _bad_input_errors():
    from sora_jax.data.errors import DataError
    from sora_jax.infer.text import RequestError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.errors import ConfigurationError
    return BadInput, ConfigurationError, ConfigError, DataError, RequestError


# Allowed ranges; 0 keeps its documented meaning where it has one.
_RANGES = {"max_new_tokens": (lambda v: v >= 0, ">= 0 (0: up to the context)"),
           "beam": (lambda v: v >= 0, ">= 0 (0: greedy or sampling)"),
           "length_penalty": (lambda v: 0 <= v < math.inf, "finite and >= 0 (0: by total log-probability)"),
           "temperature": (lambda v: v >= 0, ">= 0 (0: greedy)"),
           "top_k": (lambda v: v >= 0, ">= 0 (0: all tokens)"),
           "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
           "batch_size": (lambda v: v >= 1, ">= 1"),
           "num": (lambda v: v >= 1, ">= 1"),
           "columns": (lambda v: v >= 1, ">= 1"),
           "scale": (lambda v: v >= 1, ">= 1")}


def _check_flags(task):
    """Cheap checks before the checkpoint is read."""
    for flag, (ok, rule) in _RANGES.items():
        if not ok(flags.FLAGS[flag].value):
            raise BadInput(f"--{flag} must be {rule}, got {flags.FLAGS[flag].value}")
    outputs = [("out", _OUT.value)] if task in IMAGE_TASKS else [("output_file", _OUTPUT_FILE.value)]
    if task in IMAGE_TASKS and not _OUT.value:
        raise BadInput(f"--out is required for --task={task}")
    for flag, path in outputs:
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise BadInput(f"--{flag}: directory {os.path.dirname(os.path.abspath(path))} does not exist")
        if path and os.path.isdir(path):
            raise BadInput(f"--{flag}: {path} is a directory; give a file name")
    needed = {"inpaint": ("image", "mask")}.get(task, ())
    if not _INPUT_FILE.value:
        needed += {"caption": ("image",), "vqa": ("image",)}.get(task, ())
    for flag in needed + (("image",) if task == "classify" and _IMAGE.value else ()):
        path = flags.FLAGS[flag].value
        if not path:
            raise BadInput(f"--{flag} is required for --task={task}")
        if not os.path.exists(path):
            raise BadInput(f"--{flag}: {path} does not exist")
        _check_image(path, flag)
    if _INPUT_FILE.value:
        if task in IMAGE_TASKS or task == "chat":
            raise BadInput(f"--input_file: batch mode is for the text tasks, not {task}")
        if not os.path.isfile(_INPUT_FILE.value):
            raise BadInput(f"--input_file: {_INPUT_FILE.value} "
                           f"{'is a directory' if os.path.isdir(_INPUT_FILE.value) else 'does not exist'}")
        if not _OUTPUT_FILE.value:
            raise BadInput("--output_file is required with --input_file")


def _load():
    from sora_jax.infer.run import load_run
    try:
        return load_run(_WORKDIR.value, _STEP.value)
    except _bad_input_errors() as e:
        raise BadInput(str(e)) from None


def _image_task(task):
    from sora_jax.infer.images import save_png
    run = _load()
    try:
        pixels = generate(run, task, prompt=_PROMPT.value, num=_NUM.value, columns=_COLUMNS.value,
                          image_path=_IMAGE.value, mask_path=_MASK.value, seed=_SEED.value, scale=_SCALE.value)
    except _bad_input_errors() as e:
        raise BadInput(str(e)) from None
    save_png(pixels, _OUT.value)
    print(f"wrote {_OUT.value} ({task}, checkpoint step {run.step})")


def _decoding():
    from sora_jax.infer.text import Decoding
    return Decoding(max_new_tokens=_MAX_NEW.value, beam=_BEAM.value, length_penalty=_LENGTH_PENALTY.value,
                    temperature=_TEMPERATURE.value, top_k=_TOP_K.value, top_p=_TOP_P.value, seed=_SEED.value)


def _text_task(task):
    from sora_jax.infer.text import TextTasks
    try:
        requests = _read_requests(_INPUT_FILE.value) if _INPUT_FILE.value else None
    except _bad_input_errors() as e:
        raise BadInput(str(e)) from None
    run = _load()
    tasks = TextTasks(run)
    try:
        tasks.check(task)
        if task == "chat":
            return _chat(tasks)
        if requests is not None:
            return _batch_mode(tasks, task, requests)
        request = {"image": _IMAGE.value, "question": _QUESTION.value, "prompt": _PROMPT.value,
                   "input": _INPUT.value, "text": _TEXT.value}
        print(tasks(task, [{k: v for k, v in request.items() if v}], _decoding())[0])
    except _bad_input_errors() as e:
        raise BadInput(str(e)) from None


def _read_requests(path):
    import json

    from sora_jax.data.errors import DataError
    path = os.path.abspath(path)
    requests = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as e:
        raise BadInput(f"--input_file: cannot read {path} ({e.strerror})") from None
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", file=path, record=number) from None
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not JSON ({e.msg})", file=path, record=number) from None
        if not isinstance(request, dict):
            raise DataError("expected a JSON object", file=path, record=number)
        requests.append({**request, "_file": path, "_record": number})
    if not requests:
        raise BadInput(f"--input_file: {path} has no requests (one JSON object per line)")
    return requests


def _batch_mode(tasks, task, requests):
    import json
    outputs = []
    for i in range(0, len(requests), max(1, _BATCH.value)):
        part = requests[i:i + max(1, _BATCH.value)]
        outputs += tasks(task, part, _decoding())
    temp = _OUTPUT_FILE.value + ".tmp"
    try:
        with open(temp, "w", encoding="utf-8") as f:
            for request, output in zip(requests, outputs):
                clean = {k: v for k, v in request.items() if not k.startswith("_")}
                f.write(json.dumps({**clean, "output": output}) + "\n")
        os.replace(temp, _OUTPUT_FILE.value)
    except BaseException:
        if os.path.isfile(temp):  # no stray half file when the write or the rename fails
            os.remove(temp)
        raise
    print(f"wrote {len(outputs)} outputs to {_OUTPUT_FILE.value}")


def _chat(tasks):
    """Reads a line, prints the reply, until end of input (Ctrl-D)."""
    from sora_jax.infer.chat import ChatSession
    session = ChatSession(tasks, _decoding())
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip():
            reply = session.reply(line.strip())
            print(f"sora> {reply}" if interactive else reply, flush=True)


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
