"""Search by name: the names a feature answers to, folded, with a trigram index per layer.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

``twin_fold(text)`` folds a text for comparison: accents stripped (``unaccent``, migration 0008),
runs of blanks made one space, lower case, so ``Spélugues``, ``SPELUGUES`` and ``spelugues`` are
one text, and so are ``Avenue du  Port`` and ``avenue du port``. It calls
``unaccent`` with its dictionary named, which makes it safe to declare ``IMMUTABLE`` and so to
index (the usual wrapper: ``unaccent(text)`` alone is only ``STABLE``, as it looks the
dictionary up on the search path).

``twin_search_text(name, props)`` is everything a feature is searched by, folded, one name a
line: its typed ``name``; the ``name``, ``name:<lang>``, ``alt_name``, ``old_name``,
``official_name``, ``short_name``, ``int_name``, ``loc_name``, ``reg_name`` and
``addr:housename`` keys of ``props`` and of ``props.osm`` (the OpenStreetMap tags a feature
came with); and its address, ``addr:housenumber addr:street``, ``addr:street
addr:housenumber`` and ``addr:place``, or a free-text ``address``.

``pg_trgm`` (a contrib extension shipped with the server, "trusted": the database's owner may
create it) indexes it by trigrams (GIN, ``gin_trgm_ops``) on every layer table's current
versions: a substring (``LIKE '%…%'``) or fuzzy (``<%``, word similarity) match is then an
index scan, for the store's owner; a caller under row-level security reads through a policy
that a non-leakproof operator may not be pushed below, and scans.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Layer tables (migration 0001 and later), and whether each has a typed ``name`` column.
LAYERS = {
    "roads": True,
    "intersections": False,
    "signals": False,
    "pipelines": False,
    "pipe_nodes": False,
    "power_lines": False,
    "power_nodes": False,
    "cameras": False,
    "resources": True,
    "buildings": True,
    "districts": True,
    "incidents": False,
    "closures": False,
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE FUNCTION twin_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$
            SELECT lower(regexp_replace(
                public.unaccent('public.unaccent'::regdictionary, value), '[[:blank:]]+', ' ', 'g'
            ))
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION twin_search_text(name text, props jsonb) RETURNS text
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 1000
        AS $$
        DECLARE
            lines text[] := ARRAY[name];
            tags jsonb;
            tag record;
            street text;
            number text;
        BEGIN
            IF jsonb_typeof(props) = 'object' THEN
                FOREACH tags IN ARRAY ARRAY[props, props -> 'osm'] LOOP
                    CONTINUE WHEN tags IS NULL OR jsonb_typeof(tags) <> 'object';
                    FOR tag IN SELECT key, value FROM jsonb_each_text(tags) LOOP
                        IF tag.value <> '' AND (
                            split_part(tag.key, ':', 1) IN (
                                'name', 'alt_name', 'old_name', 'official_name', 'short_name',
                                'int_name', 'loc_name', 'reg_name'
                            )
                            OR tag.key = 'addr:housename'
                        ) THEN
                            lines := lines || tag.value;
                        END IF;
                    END LOOP;
                END LOOP;
                street := coalesce(props ->> 'addr:street', props -> 'osm' ->> 'addr:street');
                number := coalesce(
                    props ->> 'addr:housenumber', props -> 'osm' ->> 'addr:housenumber'
                );
                IF street IS NOT NULL THEN
                    lines := lines || concat_ws(' ', number, street) || (street || ' ' || number);
                END IF;
                lines := lines
                    || coalesce(props ->> 'addr:place', props -> 'osm' ->> 'addr:place')
                    || coalesce(props ->> 'address', props -> 'osm' ->> 'address');
            END IF;
            RETURN twin_fold(array_to_string(lines, E'\\n'));
        END
        $$
        """
    )
    for table, named in LAYERS.items():
        name = "name" if named else "NULL::text"
        op.execute(
            f"CREATE INDEX {table}_search_idx ON {table} "
            f"USING gin (twin_search_text({name}, props) gin_trgm_ops) WHERE valid_to IS NULL"
        )


def downgrade() -> None:
    for table in LAYERS:
        op.execute(f"DROP INDEX IF EXISTS {table}_search_idx")
    op.execute("DROP FUNCTION IF EXISTS twin_search_text(text, jsonb)")
    op.execute("DROP FUNCTION IF EXISTS twin_fold(text)")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
