"""``twin scenarios``: what-if scenarios from the command line.

Importing this module stays cheap (``twin --help`` loads nothing heavy): the store and the
figures are imported inside the commands. A bad value (an unknown scenario or layer, a feature
the catalog refuses, a file that is not GeoJSON) ends the command with one line naming the
file, the feature and the reason, and exit status 2; nothing of that command is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="What-if scenarios: named overlays of edits over the twin; the base is never touched.",
    no_args_is_help=True,
)

out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Name = Annotated[str, typer.Argument(help="The scenario's name (a slug, e.g. bridge-works).")]
Settings = Annotated[
    str | None,
    typer.Option(
        "--settings",
        help='JSON, or @FILE: {"flood": {"raster": NAME, "threshold_m": 0.3}, '
        '"broken": [{"layer": "pipelines", "id": ID}], "signal_plan": NAME}.',
    ),
]


def _fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@contextmanager
def _refusals(where: str = "") -> Iterator[None]:
    """Turn the store's refusals into one line (prefixed by ``where``) and exit 2."""
    from layers.errors import AccessError, ParameterError
    from layers.scenarios import ScenarioExistsError, ScenarioNotFoundError
    from routing import RoutingError

    try:
        yield
    except (
        ParameterError,
        ScenarioNotFoundError,
        ScenarioExistsError,
        AccessError,
        RoutingError,
    ) as exc:
        raise _fail(f"{where}{exc}") from None


def _settings(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"--settings: cannot read {path}: {exc}") from None
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise _fail(f"--settings: not JSON ({exc})") from None
    if not isinstance(settings, dict):
        raise _fail("--settings: expected a JSON object")
    return settings


def _show(scenarios: list[Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([s.to_json() for s in scenarios], ensure_ascii=False))
        return
    table = Table("name", "title", "status", "author", "base_at", "edits", "revision")
    for s in scenarios:
        edits = ", ".join(f"{layer} {n}" for layer, n in sorted(s.edits.items())) or "-"
        base_at = s.base_at.isoformat() if s.base_at else "live"
        table.add_row(s.name, s.title, s.status, s.author, base_at, edits, str(s.revision))
    out.print(table)


@app.command("list")
def list_(url: Url = None, as_json: Json = False) -> None:
    """List the stored scenarios."""
    from layers import scenarios

    _show(scenarios.list_scenarios(url=url), as_json)


@app.command()
def show(name: Name, url: Url = None, as_json: Json = False) -> None:
    """Show a scenario and its edits."""
    from layers import scenarios

    with _refusals():
        found = scenarios.get(name, url=url)
        edits = scenarios.edits(name, url=url)
    if as_json:
        body = found.to_json() | {
            "edit_list": json.loads(edits.to_json(orient="records", date_format="iso"))
        }
        out.print_json(json.dumps(body, ensure_ascii=False))
        return
    _show([found], False)
    if found.description:
        out.print(found.description, markup=False)
    table = Table("layer", "feature", "op", "author", "note", "made")
    for row in edits.astype({"valid_from": str}).to_dict("records"):
        table.add_row(
            *(str(row[k]) for k in ("layer", "feature_id", "op", "author", "note", "valid_from"))
        )
    out.print(table)


@app.command()
def create(
    name: Name,
    title: Annotated[str, typer.Option(help="A title.")] = "",
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    author: Annotated[str, typer.Option(help="Who makes it.")] = "",
    base_at: Annotated[
        str | None, typer.Option("--base-at", help="RFC 3339 moment it is built on; live twin.")
    ] = None,
    settings: Settings = None,
    url: Url = None,
) -> None:
    """Make an empty scenario."""
    from layers import scenarios

    with _refusals():
        made = scenarios.create(
            name,
            title=title,
            description=description,
            author=author,
            base_at=base_at,
            settings=_settings(settings),
            url=url,
        )
    out.print(f"scenario {made.name} made", markup=False)


@app.command()
def update(
    name: Name,
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    status: Annotated[str | None, typer.Option(help="draft, active or archived.")] = None,
    settings: Settings = None,
    url: Url = None,
) -> None:
    """Change a scenario's title, description, status or settings."""
    from layers import scenarios

    with _refusals():
        changed = scenarios.update(
            name,
            title=title,
            description=description,
            status=status,
            settings=_settings(settings),
            url=url,
        )
    out.print(f"scenario {changed.name}: revision {changed.revision}", markup=False)


@app.command()
def delete(name: Name, url: Url = None) -> None:
    """Delete a scenario and its edits (the base is untouched)."""
    from layers import scenarios

    with _refusals():
        scenarios.delete(name, url=url)
    out.print(f"scenario {name} deleted", markup=False)


def _features(path: Path) -> list[dict[str, Any]]:
    """Read a GeoJSON Feature or FeatureCollection, refusing anything else naming the file."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise _fail(f"{path}: not JSON ({exc})") from None
    if isinstance(body, dict) and body.get("type") == "Feature":
        return [body]
    if isinstance(body, dict) and body.get("type") == "FeatureCollection":
        features = body.get("features")
        if isinstance(features, list) and all(isinstance(f, dict) for f in features):
            return features
    raise _fail(f"{path}: expected a GeoJSON Feature or FeatureCollection")


@app.command()
def put(
    name: Name,
    layer: Annotated[str, typer.Argument(help="The layer (roads, buildings, closures ...).")],
    path: Annotated[Path, typer.Argument(help="A GeoJSON Feature or FeatureCollection (CRS84).")],
    author: Annotated[str, typer.Option(help="Who makes the edit.")] = "",
    note: Annotated[str, typer.Option(help="Why.")] = "",
    url: Url = None,
) -> None:
    """Add or change features in a scenario (each needs its id: the base's id changes it).

    Every feature is checked before any is stored: a bad one stores none.
    """
    from layers import scenarios
    from layers.catalog import LAYERS
    from layers.editing import checked_id, validated_row

    features = _features(path)
    if layer not in LAYERS:
        raise _fail(f"layer: {layer!r} is not a stored layer; layers: {', '.join(LAYERS)}")
    seen: dict[str, int] = {}
    for i, feature in enumerate(features):
        with _refusals(f"{path}: feature {i} ({feature.get('id')!r}): "):
            feature_id = checked_id(feature.get("id"))
            validated_row(LAYERS[layer], feature_id, feature)
        if feature_id in seen:
            raise _fail(
                f"{path}: feature {i} ({feature_id!r}): the same id as feature {seen[feature_id]}"
            )
        seen[feature_id] = i
    for i, feature in enumerate(features):
        with _refusals(f"{path}: feature {i} ({feature.get('id')!r}): "):
            edit = scenarios.put_feature(name, layer, feature, author=author, note=note, url=url)
        out.print(f"{edit.op} {layer} {edit.feature_id} (revision {edit.revision})", markup=False)


@app.command()
def retire(
    name: Name,
    layer: Annotated[str, typer.Argument(help="The layer.")],
    ids: Annotated[list[str], typer.Argument(help="Feature ids.")],
    author: Annotated[str, typer.Option(help="Who.")] = "",
    note: Annotated[str, typer.Option(help="Why.")] = "",
    url: Url = None,
) -> None:
    """Retire features in a scenario (the base keeps them)."""
    from layers import scenarios

    for feature_id in ids:
        with _refusals(f"{layer} {feature_id}: "):
            edit = scenarios.retire_feature(
                name, layer, feature_id, author=author, note=note, url=url
            )
        out.print(f"{edit.op} {layer} {feature_id} (revision {edit.revision})", markup=False)


@app.command()
def undo(
    name: Name,
    layer: Annotated[str, typer.Argument(help="The layer.")],
    feature_id: Annotated[str, typer.Argument(help="The feature whose edit to drop.")],
    url: Url = None,
) -> None:
    """Drop a scenario's edit of a feature: the base's shows again in it."""
    from layers import scenarios

    with _refusals():
        edit = scenarios.drop_edit(name, layer, feature_id, url=url)
    out.print(f"dropped the edit of {layer} {feature_id} (revision {edit.revision})", markup=False)
