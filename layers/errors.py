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


class AccessError(PermissionError):
    """The caller may not see or do this; the API answers with ``status``.

    401 when the caller is not signed in (and must be to go on), 403 when it is but its roles do
    not permit the action on a layer it can see, 404 when the layer is hidden from it (a hidden
    layer answers as an unknown one, GeoServer's "hide" catalog mode).

    Parameters
    ----------
    message
        What was refused, in the caller's terms.
    status
        401, 403 or 404.
    parameter
        The request parameter naming what was refused, if one does.
    """

    def __init__(self, message: str, *, status: int, parameter: str | None = None):
        super().__init__(message)
        self.status = status
        self.parameter = parameter
