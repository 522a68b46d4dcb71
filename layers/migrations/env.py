"""Alembic environment: runs the migrations on the engine the twin's settings name."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from layers.database import get_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    with get_engine(url).connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run `twin db upgrade`")
run_migrations_online()
