"""What the inference commands share: a bad-input exit (one line on stderr, code 2) and an absl
app whose flag errors take that exit too."""

from __future__ import annotations

import sys

from absl import app, flags

BAD_INPUT = 2


def fail(message: str, code: int = BAD_INPUT):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip()) or type(e).__name__


def run_app(main):
    """app.run whose flag errors (a config file that fails to load included) exit with code 2."""
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except (flags.Error, ValueError, KeyError, AttributeError, TypeError, OSError) as e:
            fail(one_line(e))
    app.run(main, flags_parser=parse)
