"""What the inference commands share: a bad-input exit (one line on stderr, code 2) and an absl
app whose flag errors take that exit too."""

from __future__ import annotations

import ast
import os
import sys
import sysconfig

from absl import app, flags

BAD_INPUT = 2


_exit_at_once = False


def exit_at_once_on_failure():
    """After a checkpoint failed to restore, Orbax's abandoned reads print errors from their
    threads while the interpreter shuts down ("Event loop is closed", tracebacks) below the
    one-line message: fail() then ends the process without that shutdown."""
    global _exit_at_once
    _exit_at_once = True


def fail(message: str, code: int = BAD_INPUT):
    print(f"error: {message}", file=sys.stderr)
    if _exit_at_once:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = _unquote(_unquote(text.strip()))  # a KeyError's message, re-wrapped by absl, arrives as a repr
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip()) or type(e).__name__


def _unquote(text: str) -> str:
    """The string a repr stands for, if text is exactly one string's repr."""
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, str) and repr(value) == text:
            return value
    return text


# Code of this package, the standard library and installed packages; any other frame in a
# traceback belongs to the user's config file.
_LIBRARY_DIRS = tuple(os.path.realpath(d) + os.sep for d in {
    os.path.dirname(os.path.abspath(__file__)), *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))})


def _user_frame(e: BaseException):
    """file:line of the innermost traceback frame in the user's own code (None if there is none)."""
    where, tb = None, e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<") and not os.path.realpath(filename).startswith(_LIBRARY_DIRS):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _innermost(e: BaseException) -> BaseException:
    """The exception a chain started from: ml_collections and absl re-raise a config file's own
    error as new ones, flattened to text, with the original as their context."""
    seen = {id(e)}
    while True:
        origin = e.__cause__ or (None if e.__suppress_context__ else e.__context__)  # `from None` stops
        if origin is None or id(origin) in seen:
            return e
        e = origin
        seen.add(id(e))


def _raised_in_user_code(e: BaseException) -> bool:
    return isinstance(e, SyntaxError) or _user_frame(e) is not None


def _key_message(text: str, argv=()) -> str:
    """ml_collections names a misspelt key alone ('num_stepz' Did you mean ...): say what it is,
    and which flag has it (--config.train.num_stepz)."""
    if not (text.startswith("'") and "Did you mean" in text):
        return text
    key = text[1:].split("'", 1)[0]
    flag = next((a.split("=", 1)[0] for a in argv if a.startswith("--") and "." in a.split("=", 1)[0]
                 and key in a.split("=", 1)[0].split(".")[1:]), None)
    return f"{flag + ': ' if flag else ''}config key {text}"


def config_file_error(e: BaseException, flag: str = "--config") -> str:
    """One line for a config file that failed to load: where (file:line in it) and what."""
    where = f"{e.filename}:{e.lineno}" if isinstance(e, SyntaxError) else _user_frame(e)
    if where and where.rsplit(":", 1)[0].endswith(".json"):  # a run's config.json, read as Python
        path = where.rsplit(":", 1)[0]
        return f"{flag}: {path} is JSON, not a config file; run a saved config with --config=configs/from_run.py:{path}"
    if isinstance(e, SyntaxError):
        return f"{flag}: {where}: syntax error: {e.msg}"
    return f"{flag}: {where + ': ' if where else ''}{type(e).__name__}: {one_line(e)}"


def run_app(main):
    """app.run whose flag errors (a config file that fails to load included) exit with code 2."""
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except Exception as e:  # noqa: BLE001 - a bad flag, or whatever a config file's own code raised
            inner = _innermost(e)
            fail(config_file_error(inner) if _raised_in_user_code(inner) else _key_message(one_line(e), argv))
    app.run(main, flags_parser=parse)
