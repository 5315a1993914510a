"""The report as markdown (pictures as PNG files beside it) and as one self-contained HTML page
(pictures embedded as data URIs, so the page can be mailed or opened anywhere)."""

from __future__ import annotations

import base64
import html
import io
import os
import re
from typing import NamedTuple

import numpy as np
from PIL import Image

# Which eval metrics the table shows, by the end of their key, and how it names them.
_METRICS = (("/exact_match", "exact match"), ("/bleu", "BLEU"), ("/rouge1", "ROUGE-1"), ("/rouge2", "ROUGE-2"),
            ("/rougeL", "ROUGE-L"), ("/accuracy/classify", "accuracy"), ("/perplexity/lm", "perplexity"),
            ("/perplexity/seq2seq", "perplexity"), ("gan/cond_accuracy", "conditional accuracy"),
            ("gan/fid", "FID"), ("gan/hole_l1", "hole L1"), ("gan/hole_psnr", "hole PSNR (dB)"))


class Figure(NamedTuple):
    name: str  # file name under the report folder
    png: bytes
    caption: str


def metric_rows(last_eval: dict) -> list[tuple[str, str, float]]:
    """(component, metric, value) for the headline metrics of the newest eval."""
    rows = []
    for key, value in sorted(last_eval.items()):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for suffix, label in _METRICS:
            if key.endswith(suffix):
                component = "image generator" if key.startswith("gan/") else key.split("/")[0]
                rows.append((component, label, float(value)))
                break
    return rows


def png_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _said(text: str) -> str:
    """The model's output as shown: an empty generation is visible as such."""
    return text if text.strip() else "(nothing)"


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"


def pivot(metrics) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(metric names, [(component, cells)]): one row per component, "-" where it has no such metric."""
    names = [label for _, label in _METRICS if any(m == label for _, m, _ in metrics)]
    names = list(dict.fromkeys(names))
    rows = {}
    for component, metric, value in metrics:
        rows.setdefault(component, {})[metric] = _fmt(value)
    return names, [(c, [cells.get(n, "-") for n in names]) for c, cells in rows.items()]


def write(workdir: str, title: str, metrics: list, figures: list, show, notes: list[str]) -> tuple[str, str]:
    """Writes DIR/report/*.png, DIR/report.md and DIR/report.html; returns the two paths."""
    folder = os.path.join(workdir, "report")
    os.makedirs(folder, exist_ok=True)
    scene_figures = [Figure(f"scene_{i}.png", png_bytes(s.image, scale=6), "") for i, s in enumerate(show.scenes)]
    sample_figures = {kind: Figure(f"{kind}.png", open(path, "rb").read(), "") for kind, path in show.samples.items()}
    for figure in [*figures, *scene_figures, *sample_figures.values()]:
        with open(os.path.join(folder, figure.name), "wb") as f:
            f.write(figure.png)
    md = _markdown(title, metrics, figures, show, scene_figures, sample_figures, notes)
    page = _html(title, metrics, figures, show, scene_figures, sample_figures, notes)
    paths = os.path.join(workdir, "report.md"), os.path.join(workdir, "report.html")
    for path, text in zip(paths, (md, page)):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return paths


def _markdown(title, metrics, figures, show, scenes, samples, notes) -> str:
    names, rows = pivot(metrics)
    out = [f"# {title}", ""] + [f"{n}  " for n in notes] + ["", "## Metrics", "",
                                                           "| part | " + " | ".join(names) + " |",
                                                           "|---" * (len(names) + 1) + "|"]
    out += [f"| {c} | " + " | ".join(cells) + " |" for c, cells in rows] + [""]
    for figure in figures:
        out += [f"## {figure.caption}", "", f"![{figure.caption}](report/{figure.name})", ""]
    if show.scenes:
        out += ["## Validation scenes", "", "| image | caption (reference / model) | question | answer "
                "(reference / model) | class (reference / model) |", "|---|---|---|---|---|"]
        for s, figure in zip(show.scenes, scenes):
            out.append(f"| ![scene](report/{figure.name}) | {s.caption} / **{_said(s.predicted_caption)}** | "
                       f"{s.question} | {s.answer} / **{_said(s.predicted_answer)}** | {s.label} / "
                       f"**{_said(s.predicted_label)}** |")
        out.append("")
    for kind, heading in (("t2i", "Text to image"), ("inpaint", "Inpainting (original | masked | completed)")):
        if kind in samples:
            out += [f"## {heading}", "", f"![{kind}](report/{samples[kind].name})", ""]
            if kind == "t2i" and show.prompts:
                out += [f"{i + 1}. {p}" for i, p in enumerate(show.prompts)] + [""]
    if show.continuation:
        prompt, text = show.continuation
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", prompt + text)), default=0))
        out += ["## Shakespeare continuation", "", fence, prompt + text, fence, ""]
    if show.chat:
        out += ["## Chat", ""] + [f"**{who}:** {line}  " for who, line in show.chat] + [""]
    return "\n".join(out)


def _img(png: bytes, alt: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" class="{css}">'


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
img.pixel{image-rendering:pixelated}pre{background:#f5f5f5;padding:1em;white-space:pre-wrap}
.model{font-weight:bold;color:#0a5}.grid{display:flex;flex-wrap:wrap;gap:1em}"""
# Marks the page once every image has loaded (or failed): a headless browser reads it back.
_SCRIPT = """window.addEventListener("load", () => { const imgs = [...document.images];
const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length); });"""


def _html(title, metrics, figures, show, scenes, samples, notes) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
           f"<script>{_SCRIPT}</script></head><body>", f"<h1>{e(title)}</h1>"]
    out += [f"<p>{e(n)}</p>" for n in notes]
    names, rows = pivot(metrics)
    out += ["<h2>Metrics</h2><table><tr><th>part</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    out += [f"<tr><td>{e(c)}</td>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>" for c, cells in rows]
    out += ["</table>"]
    out += ["<div class='grid'>"] + [f"<figure>{_img(f.png, f.caption)}<figcaption>{e(f.caption)}</figcaption>"
                                     f"</figure>" for f in figures] + ["</div>"]
    if show.scenes:
        out += ["<h2>Validation scenes</h2><table><tr><th>image</th><th>caption</th><th>question</th><th>answer</th>"
                "<th>class</th></tr>"]
        for s, figure in zip(show.scenes, scenes):
            def pair(ref, model):
                return f"{e(ref)}<br><span class='model'>{e(_said(model))}</span>"
            out.append(f"<tr><td>{_img(figure.png, s.caption, 'pixel')}</td><td>{pair(s.caption, s.predicted_caption)}"
                       f"</td><td>{e(s.question)}</td><td>{pair(s.answer, s.predicted_answer)}</td>"
                       f"<td>{pair(s.label, s.predicted_label)}</td></tr>")
        out += ["</table><p>Reference above, <span class='model'>the model's greedy output</span> below.</p>"]
    for kind, heading in (("t2i", "Text to image (one row per prompt, fixed noise)"),
                          ("inpaint", "Inpainting: original | masked | completed")):
        if kind in samples:
            out += [f"<h2>{e(heading)}</h2>", _img(samples[kind].png, heading, "pixel")]
            if kind == "t2i" and show.prompts:
                out.append("<ol>" + "".join(f"<li>{e(p)}</li>" for p in show.prompts) + "</ol>")
    if show.continuation:
        prompt, text = show.continuation
        out += ["<h2>Shakespeare continuation</h2>", f"<pre><b>{e(prompt)}</b>{e(text)}</pre>"]
    if show.chat:
        out += ["<h2>Chat</h2><p>"] + [f"<b>{e(who)}:</b> {e(line)}<br>" for who, line in show.chat] + ["</p>"]
    out.append("</body></html>")
    return "\n".join(out)
