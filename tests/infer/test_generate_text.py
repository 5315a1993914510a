"""`python -m sora_jax.generate` for the text tasks, end to end: a captioning model trained for a
few dozen steps on shapes captions images (greedy and beam search), in batch mode too, and bad
input is one line with exit code 2."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.shared_run import run_evaluate, shared_run
from tests.train.test_cli import ENV, ROOT, run, truncate_files


def generate(workdir, *flags, stdin=None):
    return subprocess.run([sys.executable, "-m", "sora_jax.generate", f"--workdir={workdir}", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=ENV, input=stdin)


@pytest.fixture(scope="session")
def caption_run(tmp_path_factory):
    """Trained once for all test workers."""
    def train(workdir):
        out = run(workdir, "--config.train.num_steps=30", "--config.train.checkpoint_every=30",
                  "--config.model.decoder.dropout_rate=0.0", "--config.train.eval_generate_batches=1")
        assert out.returncode == 0, out.stderr[-3000:]
    return shared_run(tmp_path_factory, "caption_run", train)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    from sora_jax.data.datasets.shapes import ShapesSource
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(ShapesSource("validation", image_size=16)[0]["image"]).save(path)
    return str(path)


def test_caption_greedy_and_beam_print_text(caption_run, image_path):
    greedy = generate(caption_run, "--task=caption", f"--image={image_path}")
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    assert len(greedy.stdout.strip().splitlines()) == 1 and greedy.stdout.strip()
    again = generate(caption_run, "--task=caption", f"--image={image_path}")
    assert again.stdout == greedy.stdout  # deterministic
    beam = generate(caption_run, "--task=caption", f"--image={image_path}", "--beam=3", "--max_new_tokens=12")
    assert beam.returncode == 0, beam.stderr[-3000:]
    assert len(beam.stdout.strip().splitlines()) == 1


def test_batch_mode_writes_one_output_per_request(caption_run, image_path, tmp_path):
    requests = tmp_path / "in.jsonl"
    os.symlink(image_path, tmp_path / "a.png")
    requests.write_text(json.dumps({"image": "a.png", "id": 1}) + "\n\n" + json.dumps({"image": image_path}) + "\n")
    out = generate(caption_run, "--task=caption", f"--input_file={requests}", f"--output_file={tmp_path / 'out.jsonl'}")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r.get("id") for r in rows] == [1, None] and rows[0]["output"] == rows[1]["output"]
    single = generate(caption_run, "--task=caption", f"--image={image_path}")
    assert rows[0]["output"] == single.stdout.strip()  # batching does not change the result


@pytest.mark.parametrize("flags, message", [
    (["--task=vqa", "--image={image}", "--question=what?"], "trained on caption, not vqa"),
    (["--task=caption", "--image={bad}"], "--image: cannot read {bad} as an image (UnidentifiedImageError)"),
    (["--task=caption", "--image=/nonexistent.png"], "--image: /nonexistent.png does not exist"),
    (["--task=caption", "--input_file={badjson}", "--output_file={out}"], "badjson.jsonl"),
    (["--task=caption"], "--image is required"),
    (["--task=caption", "--input_file={missing}", "--output_file={out}"], "missing.jsonl:2: task caption: the request "
                                                                         "needs 'image'"),
    (["--task=caption", "--input_file={latin}", "--output_file={out}"], "latin.jsonl:2: not UTF-8 text"),
    (["--task=caption", "--input_file={folder}", "--output_file={out}"], "--input_file: {folder} is a directory"),
    (["--task=caption", "--input_file={missing}", "--output_file={folder}"], "--output_file: {folder} is a directory"),
    (["--task=t2i", "--prompt=a", "--out={folder}"], "--out: {folder} is a directory"),
    (["--task=t2i", "--prompt=a", "--out={out}", "--scale=0"], "--scale must be >= 1, got 0"),
    (["--task=caption", "--image={image}", "--max_new_tokens=-3"], "--max_new_tokens must be >= 0"),
    (["--task=caption", "--image={image}", "--temperature=-1"], "--temperature must be >= 0 (0: greedy), got -1"),
    (["--task=caption", "--image={image}", "--top_p=2.5"], "--top_p must be in (0, 1], got 2.5"),
    (["--task=caption", "--image={image}", "--top_p=0"], "--top_p must be in (0, 1], got 0"),
    (["--task=caption", "--image={image}", "--top_k=-4"], "--top_k must be >= 0 (0: all tokens), got -4"),
    (["--task=caption", "--image={image}", "--beam=-2"], "--beam must be >= 0"),
    (["--task=caption", "--image={image}", "--beam=2", "--length_penalty=nan"],
     "--length_penalty must be finite and >= 0 (0: by total log-probability), got nan"),
    (["--task=caption", "--input_file={empty}", "--output_file={out}"], "--input_file: {empty} has no requests"),
])
def test_bad_input_is_one_line_and_exit_code_2(caption_run, image_path, tmp_path, flags, message):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    badjson = tmp_path / "badjson.jsonl"
    badjson.write_text('{"image": "x.png"}\n{not json\n')
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"image": image_path}) + "\n" + json.dumps({"question": "x"}) + "\n")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"image": image_path}).encode() + b"\n\xff\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n \n")
    folder = tmp_path / "folder"
    folder.mkdir()
    out = tmp_path / "out.jsonl"
    names = dict(image=image_path, bad=bad, badjson=badjson, out=out, missing=missing, latin=latin, folder=folder,
                 empty=empty)
    result = generate(caption_run, *[f.format(**names) for f in flags])
    assert result.returncode == 2, result.stderr[-2000:]
    assert message.format(**names) in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp")) and not list(folder.iterdir())


def test_unreadable_checkpoints_fall_back_or_exit_2(caption_run, image_path, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(caption_run, workdir)
    shutil.copytree(workdir / "checkpoints" / "30", workdir / "checkpoints" / "20")  # an older, readable one
    truncate_files(workdir / "checkpoints" / "30" / "state")
    fallback = generate(workdir, "--task=caption", f"--image={image_path}")
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert f"warning: checkpoint at step 30 in {workdir}/checkpoints cannot be read" in fallback.stderr
    assert "using step 20" in fallback.stderr and fallback.stdout.strip()
    chosen = generate(workdir, "--task=caption", f"--image={image_path}", "--step=30")
    assert chosen.returncode == 2 and len(chosen.stderr.strip().splitlines()) == 1, chosen.stderr
    assert f"error: --step: checkpoint 30 in {workdir}/checkpoints cannot be read" in chosen.stderr
    # Another model in config.json: no checkpoint fits it.
    config = json.loads((workdir / "config.json").read_text())
    config["model"]["decoder"]["d_model"] *= 2
    (workdir / "config.json").write_text(json.dumps(config))
    other = generate(workdir, "--task=caption", f"--image={image_path}")
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert f"no checkpoint in {workdir}/checkpoints (steps 20, 30) can be read with {workdir}/config.json" in other.stderr
    (workdir / "config.json").write_text('{"seed": 0,\n}')
    broken = generate(workdir, "--task=caption", f"--image={image_path}")
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1, broken.stderr
    assert f"error: --workdir: {workdir}/config.json:2: not JSON" in broken.stderr


def test_evaluate_writes_losses_and_generation_metrics(caption_run):
    out, results = run_evaluate(caption_run, 30, ENV, ROOT)
    name = "shapes/caption"
    assert results["step"] == 30 and results[f"{name}/examples"] == 32  # one batch of data.eval_batch_size
    assert results[f"{name}/perplexity/caption"] == pytest.approx(np.exp(results[f"{name}/loss/caption"]), rel=1e-6)
    for key in ("bleu", "rouge1", "rouge2", "rougeL"):
        assert 0.0 <= results[f"{name}/{key}"] <= (100.0 if key == "bleu" else 1.0)
    assert "| shapes/caption/bleu |" in out.stdout
    # The trainer's final eval decoded and scored the same batch with the same functions.
    with open(os.path.join(caption_run, "metrics.jsonl")) as f:
        trainer = [r for r in map(json.loads, f) if r["split"] == "eval"][-1]
    for key in ("exact_match", "bleu", "rouge1", "rouge2", "rougeL", "examples"):
        assert trainer[f"{name}/{key}"] == pytest.approx(results[f"{name}/{key}"], rel=1e-6), key
    assert trainer[f"{name}/sample"] == results[f"{name}/sample"]
    bad = subprocess.run([sys.executable, "-m", "sora_jax.evaluate", f"--workdir={caption_run}x"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


@pytest.mark.parametrize("flags, message", [
    (["--max_batches=-1"], "error: --max_batches must be >= 0 (0: the whole split), got -1"),
    (["--beam=-3"], "error: --beam must be >= 0 (0: greedy), got -3"),
    (["--split=valdation"], "error: --split: unknown split 'valdation'; this run's data has train, validation, holdout"),
])
def test_evaluate_bad_flags_are_one_line_and_exit_code_2(caption_run, flags, message):
    bad = subprocess.run([sys.executable, "-m", "sora_jax.evaluate", f"--workdir={caption_run}", *flags], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [message], bad.stderr
