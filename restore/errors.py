"""Errors a user can cause.  Each prints as one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["RestoreError", "InputError", "PipelineError", "ModelError", "OutputError", "TRANSIENT_NOTE"]

#: Ends the message of an output error that is no fault of the input (disk full, an I/O error of the output
#: device): the journal retries such an item on the next run without --retry-failed.
TRANSIENT_NOTE = "(retried on the next run)"


class RestoreError(Exception):
    """Base of the errors the CLI reports as one line (no traceback)."""


class InputError(RestoreError):
    """An input file cannot be read: missing, truncated, unsupported, too large.

    Args:
        path: The offending file.
        problem: What is wrong, in a few words.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class OutputError(InputError):
    """An output cannot be written (bad path template, unsupported format...)."""


class PipelineError(RestoreError):
    """A pipeline file is invalid; the message names file, line and key."""


class ModelError(RestoreError):
    """A model cannot be found, verified or loaded."""
