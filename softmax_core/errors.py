"""The errors a user can fix: bad input, named in one line with the fix.

The command line prints an :class:`InputError` (and the data and backend errors, which are
input errors too) as one line and exits 1; any other exception is a bug and keeps its
traceback.  An :class:`InputError` is a ValueError and an :class:`InputTypeError` a
TypeError, so code calling the library catches them as before.
"""


class InputError(ValueError):
    """A value the user gave (an argument, a file, a setting) that softmax-bench cannot use."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


__all__ = ["InputError", "InputTypeError"]
