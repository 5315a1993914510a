"""Every shell command the README and docs/ show still exists as shown: `python -m sora_jax.X` modules and
each of their --flags, `configs/*.py` files and every `--config.a.b=` key in them, `make` targets,
launcher scripts and benchmark files (the Python examples run in test_readme.py; the demo runs the
demo's commands)."""

import importlib
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCS = ["README.md"] + sorted(os.path.join("docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))
README = ""
for _doc in _DOCS:
    with open(os.path.join(ROOT, _doc), encoding="utf-8") as f:
        README += f.read() + "\n"
# Shell blocks, with backslash continuations joined.
SHELL = [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]
COMMANDS = [line.split("#")[0].strip() for block in SHELL for line in block.splitlines() if line.strip()]
MODULE_COMMANDS = [c for c in COMMANDS if c.startswith("python -m sora_jax")]


def _flags_of(module) -> set:
    """The flags `python -m module --helpfull` lists (absl), or its argparse --help option list."""
    out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    absl = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", out.stdout, flags=re.M))
    if absl:
        return absl
    helped = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    return set(re.findall(r"^\s+--(\w+)", helped.stdout, flags=re.M))  # argparse's option list


_FLAGS = {}


def _placeholder(path) -> bool:
    """configs/NAME.py: a name for the reader to fill in."""
    return bool(re.search(r"/[A-Z_]+\.\w+$", path))


def test_the_readme_shows_commands():
    assert len(MODULE_COMMANDS) >= 15 and any(c.startswith("make ") for c in COMMANDS)


@pytest.mark.parametrize("command", MODULE_COMMANDS)
def test_module_and_flags_exist(command):
    module = command.split()[2]
    if module not in _FLAGS:
        _FLAGS[module] = _flags_of(module)
    defined = _FLAGS[module]
    assert defined, f"{module} lists no flags (does it exist?)"
    for name in re.findall(r"--(\w+)(?==|\s|\]|$)", command):
        assert name in defined, f"{command}: --{name} is not a flag of {module}"
    for path in re.findall(r"--config=(\S+\.py)", command):
        assert _placeholder(path) or os.path.isfile(os.path.join(ROOT, path)), path


@pytest.mark.parametrize("command", [c for c in MODULE_COMMANDS if re.search(r"--config\.\w+\.\w", c)
                                     and re.search(r"--config=configs/[a-z]\w*\.py", c)])
def test_config_overrides_name_real_keys(command):
    name = re.search(r"--config=configs/(\w+)\.py", command).group(1)
    config = importlib.import_module(f"configs.{name}").get_config()
    for key in re.findall(r"--config\.([\w.]+)=", command):
        node = config
        for part in key.split("."):
            assert part in node, f"{command}: config key {key} does not exist"
            node = node[part]


def test_make_targets_launchers_and_benchmarks_exist():
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = set(re.findall(r"^([\w-]+):", f.read(), flags=re.M))
    for command in COMMANDS:
        if command.startswith("make "):
            assert command.split()[1] in targets, command
    for path in set(re.findall(r"\b((?:launch|benchmarks|configs)/[\w./-]+\.(?:sh|sbatch|yaml|py))", README)):
        assert _placeholder(path) or os.path.isfile(os.path.join(ROOT, path)), path
