"""The one exception type that bad user input raises."""

from __future__ import annotations


class InputError(ValueError):
    """Input that the engine cannot use; the message says what was found and what was expected.

    The CLI prints it as one line and exits non-zero; the widget shows it as a notification.
    """
