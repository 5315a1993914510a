"""`python -m sora_jax.report` on a run of every demo task: the markdown and the self-contained
page hold the metrics table, the curves and every section, with images that decode; and, where
Debian's chromium is installed, a real headless browser loads the page with every image and takes
a screenshot: that test is marked `browser` and runs in `make check-report` (which installs
chromium), not in `make test`."""

import base64
import io
import os
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tests.infer.test_generate_text import caption_run  # noqa: F401  (the shared trained run)
from tests.shared_run import shared_run
from tests.train.test_cli import ENV, ROOT

SECTIONS = ("Metrics", "Validation scenes", "Text to image", "Inpainting", "Shakespeare continuation", "Chat")


def _run(module, *flags):
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=ENV)


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory):
    def train_and_report(workdir):
        out = _run("sora_jax.main", "--config=tests/report/demo_tiny_config.py", f"--workdir={workdir}")
        assert out.returncode == 0, out.stderr[-3000:]
        out = _run("sora_jax.report", f"--workdir={workdir}")
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"report: {workdir}/report.html" in out.stdout and "tensorboard --logdir" in out.stdout
    return shared_run(tmp_path_factory, "demo_tiny_report", train_and_report)


def _page(workdir):
    with open(os.path.join(workdir, "report.html"), encoding="utf-8") as f:
        return f.read()


def test_the_page_is_self_contained_and_every_image_decodes(report_dir):
    page = _page(report_dir)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 2 + 8 + 2  # two plots, the validation scenes, the t2i grid, the inpainting panels
    for src in sources:
        assert src.startswith("data:image/png;base64,")  # nothing outside the file
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            assert image.size[0] > 0 and image.size[1] > 0
    for section in SECTIONS:
        assert section in page
    for metric in ("exact match", "BLEU", "ROUGE-L", "accuracy", "perplexity", "conditional accuracy", "FID"):
        assert f"<th>{metric}</th>" in page


def test_the_markdown_links_files_that_exist(report_dir):
    with open(os.path.join(report_dir, "report.md"), encoding="utf-8") as f:
        md = f.read()
    for section in SECTIONS:
        assert f"## {section}" in md
    links = re.findall(r"\]\((report/[^)]+)\)", md)
    assert links
    for link in links:
        assert os.path.getsize(os.path.join(report_dir, link)) > 0
    table = [line for line in md.splitlines() if line.startswith("| ![scene]")]
    assert len(table) == 8


def test_report_on_a_missing_run_is_one_line_and_exit_2(tmp_path):
    out = _run("sora_jax.report", f"--workdir={tmp_path / 'nowhere'}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: --workdir: {tmp_path / 'nowhere'} does not exist"]
    (tmp_path / "config.json").write_text("{not json")
    broken = _run("sora_jax.report", f"--workdir={tmp_path}")
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines() == [f"error: --workdir: {tmp_path}/config.json:1: not JSON "
                                                  f"(Expecting property name enclosed in double quotes)"]
    scenes = _run("sora_jax.report", f"--workdir={tmp_path}", "--scenes=-1")
    assert scenes.returncode == 2
    assert scenes.stderr.strip().splitlines() == ["error: --scenes must be >= 0 (0: no scenes), got -1"]


def test_zero_scenes_leaves_the_section_out(caption_run, tmp_path):  # noqa: F811
    workdir = tmp_path / "run"
    shutil.copytree(caption_run, workdir)  # the report is written into the run's folder
    out = _run("sora_jax.report", f"--workdir={workdir}", "--scenes=0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Validation scenes" not in (workdir / "report.md").read_text(encoding="utf-8")


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run `make check-report`, which installs Debian's package")
    return found


@pytest.mark.browser
def test_browser_loads_every_image_and_takes_a_screenshot(report_dir, tmp_path):
    chromium = _chromium()
    page = "file://" + os.path.join(report_dir, "report.html")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded, "the page's load handler did not run"
    ok, total = map(int, loaded.groups())
    assert total == len(re.findall(r"<img ", _page(report_dir))) and ok == total
    shot = tmp_path / "report.png"
    out = subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", page], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50  # a rendered page, not a blank one


def test_a_metrics_line_cut_short_is_left_out_and_counted(tmp_path, capsys):
    from sora_jax.reporting.plots import read_metrics
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 2.0}\n{"step": 2, "spl')
    assert read_metrics(str(tmp_path)) == [{"step": 1, "split": "train", "loss": 2.0}]
    assert "left out 1 line(s) that are not JSON (line 2)" in capsys.readouterr().err


def test_the_loss_chart_of_a_run_without_text_targets_shows_the_gan_losses(monkeypatch):
    import warnings

    from sora_jax.reporting import plots
    rows = [{"step": s, "split": "train", "loss": 0.0, "gan/g_loss": g, "gan/d_loss": d, "gan/r1": 0.3}
            for s, g, d in ((10, 5.2, 6.4), (20, 0.9, -0.2))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned on log-scaling an all-zero curve
        assert plots.loss_curves(rows).startswith(b"\x89PNG")
    drawn = {}
    monkeypatch.setattr(plots, "_plot", lambda curves, *a, log=False, **k: drawn.update(
        keys=[c[0] for c in curves], log=log))
    plots.loss_curves(rows)
    assert drawn == {"keys": ["gan/d_loss", "gan/g_loss"], "log": False}  # no flat text loss; a negative value
    plots.loss_curves([{"step": 1, "split": "train", "loss": 2.0, "loss/lm": 2.0}])
    assert drawn == {"keys": ["loss", "loss/lm"], "log": True}
