"""The error every request parameter check raises, so the API maps them all one way."""

from __future__ import annotations


class ParameterError(ValueError):
    """A request parameter that cannot be honoured; the API answers 400 naming it.

    Parameters
    ----------
    message
        What is wrong.
    parameter
        The parameter at fault, if one is.
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter
