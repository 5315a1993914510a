"""The GAN in the training command and `python -m sora_jax.generate`, end to end in subprocesses:
a mixed text/t2i/inpainting run resumes exactly, evaluates and writes sample grids; generate
writes a t2i grid and an inpainting panel; bad input is one line and exit code 2."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from tests.shared_run import run_evaluate, shared_run
from tests.train.test_cli import ENV, ROOT

CONFIG = "--config=tests/train/gan_tiny_config.py"


def train(workdir, *overrides):
    return subprocess.run([sys.executable, "-m", "sora_jax.main", CONFIG, f"--workdir={workdir}", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


def generate(workdir, *flags):
    return subprocess.run([sys.executable, "-m", "sora_jax.generate", f"--workdir={workdir}", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=ENV)


def final_state(workdir):
    import orbax.checkpoint as ocp
    path = os.path.join(workdir, "checkpoints", "6", "state")
    return ocp.StandardCheckpointer().restore(path)


def lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """Trained in two sessions (3 steps, then resumed to 6), once for all test workers."""
    def train_twice(workdir):
        first = train(workdir, "--config.train.num_steps=3")
        assert first.returncode == 0, first.stderr[-3000:]
        second = train(workdir)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "resumed from step 3" in second.stderr
    return shared_run(tmp_path_factory, "gan_run", train_twice)


def test_a_resumed_gan_run_equals_an_uninterrupted_one(run_dir, tmp_path):
    straight = str(tmp_path / "straight")
    out = train(straight, "--config.gan.sample_prompts=()")
    assert out.returncode == 0, out.stderr[-3000:]
    # Step 6's log window (steps 5-6) lies wholly after the resume at step 3.
    resumed = {d["step"]: d for d in lines(run_dir) if d["split"] == "train"}[6]
    final = {d["step"]: d for d in lines(straight) if d["split"] == "train"}[6]
    for key in ("loss", "gan/d_loss", "gan/g_loss", "gan/hole_l1", "gan/r1"):
        assert final[key] == resumed[key], key
    a, b = final_state(run_dir), final_state(straight)
    assert set(a) >= {"params", "opt_state", "gan"} and set(a["gan"]) >= {"g_params", "d_params", "ema_params"}
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_the_run_evaluates_the_generator_and_writes_sample_grids(run_dir):
    final = [d for d in lines(run_dir) if d["split"] == "eval"][-1]
    assert final["step"] == 6
    for key in ("gan/fid", "gan/cond_accuracy", "gan/judge_real_accuracy", "gan/hole_l1", "gan/hole_psnr",
                "gan/hole_l1_ratio"):
        assert np.isfinite(final[key]), key
    assert 0.0 <= final["gan/cond_accuracy"] <= 1.0 and final["gan/mean_fill_hole_l1"] > 0
    assert "caption/loss/caption" in final  # the text tasks are still evaluated
    samples = os.path.join(run_dir, "samples")
    t2i = np.asarray(Image.open(os.path.join(samples, "t2i_0000006.png")))
    assert t2i.shape == (2 * 17 + 1, 3 * 17 + 1, 3)  # 2 prompts x 3 samples of 16 px, 1 px gutters
    panels = np.asarray(Image.open(os.path.join(samples, "inpaint_0000006.png")))
    assert panels.shape == (2 * 17 + 1, 3 * 17 + 1, 3)
    assert os.listdir(os.path.join(run_dir, "tb"))
    assert os.path.exists(os.path.join(run_dir, "judge", "params.msgpack"))


def test_generate_writes_a_t2i_grid_and_an_inpainting_panel(run_dir, tmp_path):
    out = generate(run_dir, "--task=t2i", "--prompt=a large red circle", "--num=5", "--columns=4", "--scale=2",
                   f"--out={tmp_path / 'grid.png'}")
    assert out.returncode == 0, out.stderr[-3000:]
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 33 + 1, 4 * 33 + 1, 3)
    # The same seed gives the same picture; another seed another one.
    again = generate(run_dir, "--task=t2i", "--prompt=a large red circle", "--num=5", "--columns=4", "--scale=2",
                     f"--out={tmp_path / 'again.png'}")
    assert again.returncode == 0
    assert np.array_equal(grid, np.asarray(Image.open(tmp_path / "again.png")))

    image = np.zeros((16, 16, 3), np.uint8)
    image[4:12, 4:12] = (230, 40, 40)
    mask = np.zeros((16, 16), np.uint8)
    mask[6:10, :] = 255  # a band of missing pixels
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = generate(run_dir, "--task=inpaint", f"--image={tmp_path / 'in.png'}", f"--mask={tmp_path / 'mask.png'}",
                   "--prompt=a large red square", "--scale=1", f"--out={tmp_path / 'out.png'}")
    assert out.returncode == 0, out.stderr[-3000:]
    panel = np.asarray(Image.open(tmp_path / "out.png"))
    assert panel.shape == (18, 3 * 17 + 1, 3)
    original, masked, completed = (panel[1:17, 1 + k * 17:17 + k * 17] for k in range(3))
    np.testing.assert_array_equal(original, image)
    np.testing.assert_array_equal(completed[mask == 0], image[mask == 0])  # known pixels kept exactly
    assert np.all(masked[mask > 0] == 128)  # holes shown gray


@pytest.mark.parametrize("flags, message", [
    (["--task=t2i"], "no checkpoint"),
    (["--task=inpaint", "--image=/nonexistent.png", "--mask=/nonexistent.png"], "--image: /nonexistent.png"),
    (["--task=inpaint", "--image={bad}", "--mask={bad}"], "cannot read"),
    (["--task=painting"], "--task"),
    (["--task=inpaint", "--image={img}", "--mask={wide}", "--prompt=a red square"],
     "is 16x8 pixels, --image {img} 16x16: the mask must have the image's size"),
])
def test_generate_bad_input_is_one_line_and_exit_code_2(run_dir, tmp_path, flags, message):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    img, wide = tmp_path / "img.png", tmp_path / "wide.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(wide)
    workdir = str(tmp_path / "empty") if message == "no checkpoint" else run_dir
    if message == "no checkpoint":
        os.makedirs(workdir)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(open(os.path.join(run_dir, "config.json")).read())
    out = generate(workdir, *[f.format(bad=bad, img=img, wide=wide) for f in flags], f"--out={tmp_path / 'x.png'}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert message.format(img=img) in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not os.path.exists(tmp_path / "x.png")


def test_generate_refuses_a_missing_workdir_and_a_run_without_generator(tmp_path):
    out = generate(str(tmp_path / "nowhere"), "--task=t2i", f"--out={tmp_path / 'x.png'}")
    assert out.returncode == 2 and "does not exist" in out.stderr

    from sora_jax.generate import BadInput, generate as generate_fn

    class TextOnlyRun:
        gan, step = None, 10
    with pytest.raises(BadInput, match="no image generator"):
        generate_fn(TextOnlyRun(), "t2i", prompt="x", num=1, columns=1)


def test_evaluate_reports_text_and_generator_metrics(run_dir):
    _, results = run_evaluate(run_dir, 6, ENV, ROOT)
    assert "caption/bleu" in results and "caption/loss/caption" in results
    final = [d for d in lines(run_dir) if d["split"] == "eval"][-1]
    for key in ("gan/fid", "gan/cond_accuracy", "gan/hole_l1"):  # the trainer's eval used the same functions
        assert results[key] == pytest.approx(final[key], rel=1e-4)


def test_export_writes_the_generator_and_the_discriminator(run_dir, tmp_path):
    from sora_jax.interop.safetensors_io import load_params, read_metadata
    state = final_state(run_dir)
    for part, key in (("generator", "ema_params"), ("discriminator", "d_params")):
        out = tmp_path / f"{part}.safetensors"
        done = subprocess.run([sys.executable, "-m", "sora_jax.export", f"--workdir={run_dir}", f"--out={out}",
                               f"--part={part}"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
        assert done.returncode == 0, done.stderr[-3000:]
        want = state["gan"][key]
        loaded = load_params(str(out), like=want)
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert read_metadata(str(out))["part"] == part
