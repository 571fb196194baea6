"""The SDK Worker's own output: the text lines an embedded Worker writes when
the application set up no logging of its own (`default_output`). The line
formats themselves are chronosched.logs, shared with the server.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from chronosched.logs import DEFAULT_FORMAT, FIELDS, FORMATS, TextFormatter, configure, formatter

__all__ = ["DEFAULT_FORMAT", "FIELDS", "FORMATS", "configure", "default_output", "formatter"]


class _Fallback(logging.StreamHandler[IO[str]]):
    """The SDK's own output, used only while nothing else would show the
    lines: once the application configures logging (a handler on the logger
    or above it), it stays silent and hands the level back."""

    def __init__(self, logger: logging.Logger, set_level: bool) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(TextFormatter())
        self._logger = logger
        self._set_level = set_level

    def handle(self, record: logging.LogRecord) -> bool:
        if _handled_elsewhere(self._logger):
            if self._set_level:
                # The application's levels decide from now on.
                self._set_level = False
                self._logger.setLevel(logging.NOTSET)
            return False
        return super().handle(record)


def _handled_elsewhere(logger: logging.Logger) -> bool:
    """Whether a record of `logger` reaches a handler other than the SDK's."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, _Fallback) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def default_output(logger: logging.Logger) -> None:
    """Show `logger`'s lines at INFO on stderr in the text format of
    `chronosched worker`, unless the application has set up logging (then
    its configuration decides, and nothing is added). Idempotent."""
    if _handled_elsewhere(logger) or any(isinstance(h, _Fallback) for h in logger.handlers):
        return
    set_level = logger.level == logging.NOTSET
    logger.addHandler(_Fallback(logger, set_level))
    if set_level:
        logger.setLevel(logging.INFO)
