"""A pytest plugin for the conformance check: writes the URIs of every collected test's
``conformance`` marks to the file named by ``TWIN_CONFORMANCE_MARKS``, one a line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    target = os.environ.get("TWIN_CONFORMANCE_MARKS")
    if not target:
        return
    uris = {
        str(uri)
        for item in session.items
        for mark in item.iter_markers("conformance")
        for uri in mark.args
    }
    Path(target).write_text("".join(f"{uri}\n" for uri in sorted(uris)))
