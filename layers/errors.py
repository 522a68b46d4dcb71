"""The errors every request check raises, so the API maps them all one way."""

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


class MissingInputError(ParameterError):
    """An analysis needs an input the store does not hold: it names it and how to supply it.

    Raised instead of an empty answer (no districts for figures per district, no pipes for a
    utility trace, no resources of a kind for a coverage). The request is well formed; the
    city's data lacks what answering needs, which loading it resolves: HTTP's 409 Conflict
    (RFC 9110 §15.5.10: "the user might be able to resolve the conflict and resubmit the
    request"), not 422 (the request's content is fine) nor 404 (the resource asked for
    exists). The API answers :attr:`status` with ``missing`` naming the input (:mod:`api.errors`).

    Parameters
    ----------
    missing
        The missing input, as the catalog names it (``districts``, ``pipelines``,
        ``resources``, ``buildings``).
    detail
        What is missing and what it disables, e.g. "no districts loaded".
    remedy
        How to supply it: the command or call that loads it.
    parameter
        The request parameter the missing input answers to (``network`` for a trace of a
        network with no lines, ``kind`` for a coverage by a kind of resource none of which is
        loaded); ``missing`` by default.
    """

    #: HTTP status the API answers with (see the class's note).
    status = 409

    def __init__(self, missing: str, detail: str, remedy: str, *, parameter: str | None = None):
        super().__init__(f"{detail}; {remedy}", parameter=parameter or missing)
        self.missing = missing
        self.detail = detail
        self.remedy = remedy
