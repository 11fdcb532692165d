"""Errors the user can act on: each names the file, the line (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class MomokError(Exception):
    """Base class of every error that the CLI reports as a one-line message (no traceback)."""


class InputError(MomokError):
    """Bad input data: ``InputError(path, "problem", line=12)`` -> ``path:12: problem``."""

    def __init__(self, path: str | Path | None, problem: str, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.line = line
        where = "" if path is None else f"{path}:" + (f"{line}:" if line is not None else "")
        super().__init__(f"{where} {problem}".strip())


class ConfigError(MomokError):
    """Invalid configuration: unknown key, bad value, missing feature file, ..."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters (its type's name when the
    message is empty): what a one-line error quotes of a library's multi-line message."""
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__
