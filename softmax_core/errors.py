"""The errors a user can fix: bad input, named in one line with the fix.

The command line prints an :class:`InputError` (and the data and backend errors, which are
input errors too) as one line and exits 1; any other exception is a bug and keeps its
traceback.  An :class:`InputError` is a ValueError and an :class:`InputTypeError` a
TypeError, so code calling the library catches them as it catches those.
"""

import numpy as np


class InputError(ValueError):
    """A value the user gave (an argument, a file, a setting) that softmax-bench cannot use."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class BackendError(RuntimeError):
    """The requested backend cannot run here (library, GPU or Dask scheduler missing)."""


def is_whole(value, least: int = 1) -> bool:
    """Whether ``value`` is an integer (Python's or NumPy's, not a bool) of at least ``least``."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= least


def whole(value, name: str, least: int = 1, rule: str = "") -> int:
    """``value`` as an int, or an :class:`InputError` saying ``{name} must be {rule}``
    (default: ``an integer >= {least}``)."""
    if not is_whole(value, least):
        raise InputError(f"{name} must be {rule or f'an integer >= {least}'}, got {value!r}")
    return int(value)


def said(text, limit: int = 120) -> str:
    """A value or a message as an error line says it: one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted(text, limit: int = 40) -> str:
    """A value the user gave, quoted in an error line (:func:`said`)."""
    return repr(said(text, limit))


__all__ = ["BackendError", "InputError", "InputTypeError", "is_whole", "whole", "said", "quoted"]
