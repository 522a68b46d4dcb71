"""Live state that lasts a while: deleting what has expired, without moving counters for nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from layers.database import get_engine


def delete_expired(
    *, any_expired: str, delete: str, url: str | None = None, now: datetime | None = None
) -> list[tuple[Any, ...]]:
    """Run ``delete`` (a ``DELETE … RETURNING`` query) only when ``any_expired`` says to.

    A DELETE fires the table's statement trigger, and so moves its counter in
    ``layer_versions`` (which caches key on), even when it deletes nothing: look first.

    Parameters
    ----------
    any_expired
        A query of one boolean, taking ``%(now)s``.
    delete
        The deleting query, taking ``%(now)s``; its rows are returned.
    url
        Database URL; the configured one by default.
    now
        The moment to expire at; the store's clock (what ``expires_at > now()`` reads) by
        default.

    Returns
    -------
    list of tuple
        The rows ``delete`` returned; none when nothing had expired.
    """
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            if now is None:
                cur.execute("SELECT now()")
                row = cur.fetchone()
                assert row is not None
                now = row[0]
            cur.execute(any_expired, {"now": now})
            found = cur.fetchone()
            if not found or not found[0]:
                return []
            cur.execute(delete, {"now": now})
            return list(cur.fetchall())
