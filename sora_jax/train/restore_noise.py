"""Keeps Orbax's leftovers of a failed restore off the terminal.

A checkpoint that fails to restore (a truncated file, another model's shapes) leaves Orbax's
other reads of it running: their threads print "Event loop is closed" tracebacks, and their
never-awaited coroutines and never-retrieved tasks are reported when Python collects them,
hundreds of tracebacks below the one line that says what failed. The restore attempts run with
the process's stderr (fd 2) held back: if one failed, what was printed is dropped (the caller
reports each failure in one line) and those leftovers are dropped for the rest of the process;
if none failed, what was printed is passed on.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import sys
import tempfile
import time

from sora_jax.cli import exit_at_once_on_failure


@contextlib.contextmanager
def held_back(any_failed, exit_at_once=True):
    """any_failed(): whether an attempt inside failed (asked on the way out). exit_at_once: an
    error exit after a failure skips the interpreter's shutdown (for commands with nothing to
    clean up; a trainer's data workers need theirs)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            try:
                if any_failed():
                    quiet_abandoned_reads()
                    # Reports already being printed, and reads still finishing, end while held back.
                    time.sleep(0.3)
                    if exit_at_once:
                        exit_at_once_on_failure()  # an error exit skips the interpreter's shutdown, and its noise
                sys.stderr.flush()
            finally:  # whatever happens above (a second Ctrl-C), stderr comes back
                os.dup2(saved, 2)
                os.close(saved)
            if not any_failed():
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def _abandoned_read(unraisable) -> bool:
    if inspect.iscoroutine(unraisable.object):  # a read that was never awaited
        return True
    # A finished read handing its result to the event loop its restore had already closed.
    return unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"


class _NoAbandonedTasks(logging.Filter):
    """asyncio's "Task exception was never retrieved" for an abandoned Orbax read."""

    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("Task exception was never retrieved") and "orbax" in message)


def quiet_abandoned_reads():
    """From here on, drops the abandoned reads' reports (nothing else), and collects them now."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_abandoned_reads", False):
        return

    def hook(unraisable):
        if not _abandoned_read(unraisable):
            previous(unraisable)
    hook._drops_abandoned_reads = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_NoAbandonedTasks())
    gc.collect()
