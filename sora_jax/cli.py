"""What the inference commands share: a bad-input exit (one line on stderr, code 2) and an absl
app whose flag errors take that exit too."""

from __future__ import annotations

import sys

from absl import app, flags

BAD_INPUT = 2


def fail(message: str, code: int = BAD_INPUT):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_app(main):
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(str(e))
    app.run(main, flags_parser=parse)
