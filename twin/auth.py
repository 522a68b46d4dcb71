"""``twin auth``: the local issuer (users, tokens, API keys) and the access rules.

Run on the machine that holds the store, as its owner: whoever runs these commands can already
read everything. Every change to the rules reaches the API's workers within a second.

Examples
--------
.. code-block:: console

    $ twin auth user add li.wei --role emergency_commander      # asks for the password
    $ twin auth token li.wei                                    # a bearer token, for scripts
    $ twin auth key add sensors-gateway --label "SCADA bridge"  # an API key, shown once
    $ twin auth layers                                          # classification of each layer
    $ twin auth classify cameras 2
    $ twin auth mask add buildings props.phone partial --below 2 --keep-start 3 --keep-end 2
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Sign-in and access rules: users, tokens, keys, roles, layers, masks.")
user_app = typer.Typer(help="Users of the local issuer.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (for other systems).", no_args_is_help=True)
mask_app = typer.Typer(help="Masked attributes.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(mask_app, name="mask")

out = Console()
err = Console(stderr=True)
Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]
Roles = Annotated[list[str], typer.Option("--role", help="A role (repeat for several).")]


@app.callback(no_args_is_help=True)
def auth() -> None:
    """Group the sign-in and access commands."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error (no traceback) and return the exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _audit(action: str, request: str, *, layer: str | None = None, url: str | None) -> None:
    """Record a change of users, keys or rules in the audit trail (as the machine's user).

    Parameters
    ----------
    action
        ``admin`` for a rule or a user, ``token`` for a token or key.
    request
        The change, as a command (never with a password or key in it).
    layer
        The layer a rule is about, if any.
    url
        Database URL.
    """
    import getpass

    from layers.audit import AuditEvent, record_now
    from layers.database import get_engine

    event = AuditEvent(
        action=action, actor=getpass.getuser(), role="cli", layer=layer, request=request
    )
    with get_engine(url).begin() as connection:
        record_now(connection, event)


def _password(given: str | None, stdin: bool) -> str | None:
    """Return the password from --password-stdin, the option, or a prompt."""
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if given is not None:
        return given
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    roles: Roles,
    password: Annotated[
        str | None, typer.Option(help="Password (prompted for when not given).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A user that signs in with API keys only.")
    ] = False,
    generate: Annotated[
        bool,
        typer.Option("--generate-password", help="Make a random password and print it once."),
    ] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="A user that exists already is not an error.")
    ] = False,
    url: Url = None,
) -> None:
    """Create a user with its roles."""
    import secrets

    from layers.identity import IdentityError, add_user, users

    if exist_ok and any(user.name == name for user in users(url=url)):
        out.print(f"user {name} exists (twin auth user set {name} --password to change it)")
        return
    if generate:
        secret: str | None = secrets.token_urlsafe(12)
    else:
        secret = None if no_password else _password(password, password_stdin)
    try:
        user = add_user(name, roles=roles, password=secret, url=url)
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    _audit("admin", f"twin auth user add {name} --role {' --role '.join(roles)}", url=url)
    out.print(f"user {user.name} added with roles {', '.join(user.roles) or '(none)'}")
    if generate:
        out.print(f"password (shown once): [bold]{secret}[/bold]")


@user_app.command("list")
def user_list(url: Url = None) -> None:
    """List the users with their roles."""
    from layers.identity import users

    table = Table("user", "roles", "disabled", "created")
    for user in users(url=url):
        disabled = "yes" if user.disabled else ""
        table.add_row(user.name, ", ".join(user.roles), disabled, f"{user.created_at:%F}")
    out.print(table)


@user_app.command("set")
def user_set(
    name: Annotated[str, typer.Argument(help="User name.")],
    roles: Annotated[
        list[str] | None, typer.Option("--role", help="New roles, replacing the old.")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Set a new password (prompted for).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
    disable: Annotated[
        bool | None,
        typer.Option(
            "--disable/--enable", help="Disable (revoking its tokens and keys) or enable."
        ),
    ] = None,
    url: Url = None,
) -> None:
    """Change a user's roles, password, or whether it may sign in."""
    from layers.identity import IdentityError, update_user

    secret = _password(None, password_stdin) if password or password_stdin else None
    try:
        user = update_user(name, roles=roles, password=secret, disabled=disable, url=url)
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    state = "disabled" if user.disabled else "enabled"
    change = f"roles {','.join(user.roles)}" if roles is not None else ""
    change += " password" if secret is not None else ""
    change += f" {state}" if disable is not None else ""
    _audit("admin", f"twin auth user set {name}:{change or ' nothing'}", url=url)
    out.print(f"user {user.name}: roles {', '.join(user.roles) or '(none)'}, {state}")


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="User name.")],
    ttl: Annotated[
        float | None, typer.Option(help="Lifetime, s (TWIN_AUTH_TOKEN_TTL_S by default).", min=1)
    ] = None,
    url: Url = None,
) -> None:
    """Print a bearer token for a user (for scripts; the owner needs no password)."""
    from layers.identity import issue_token, users

    found = [user for user in users(url=url) if user.name == name]
    if not found:
        raise _fail(f"no user {name!r}")
    if found[0].disabled:
        raise _fail(f"user {name!r} is disabled")
    issued = issue_token(found[0], ttl_s=ttl, url=url)
    _audit("token", f"twin auth token {name} (jti {issued.jti})", url=url)
    err.print(f"token {issued.jti} for {name}, valid until {issued.expires_at:%F %T%z}")
    print(issued.access_token)


@app.command("revoke")
def revoke(
    token_or_id: Annotated[str, typer.Argument(help="A token, or its id (jti).")],
    url: Url = None,
) -> None:
    """Revoke a token (refused everywhere within seconds)."""
    from layers.identity import revoke_token

    if not revoke_token(token_or_id, url=url):
        raise _fail("no such token, or revoked already")
    _audit("token", "twin auth revoke (a token)", url=url)
    out.print("token revoked")


@key_app.command("add")
def key_add(
    name: Annotated[str, typer.Argument(help="User the key acts as.")],
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    expires: Annotated[
        str | None, typer.Option(help="When it stops working (ISO 8601); never by default.")
    ] = None,
    url: Url = None,
) -> None:
    """Make an API key (printed once: it is kept only as a digest)."""
    from layers.identity import IdentityError, create_api_key

    try:
        moment = datetime.fromisoformat(expires) if expires else None
    except ValueError:
        raise _fail(f"--expires: not an ISO 8601 moment: {expires!r}") from None
    try:
        key_id, key = create_api_key(name, label=label, expires_at=moment, url=url)
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    _audit("token", f"twin auth key add {name} (key {key_id})", url=url)
    err.print(f"API key {key_id} for {name} (send it as the X-API-Key header):")
    print(key)


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    url: Url = None,
) -> None:
    """Revoke an API key."""
    from layers.identity import revoke_api_key

    if not revoke_api_key(key_id, url=url):
        raise _fail(f"no live API key {key_id!r}")
    _audit("token", f"twin auth key revoke {key_id}", url=url)
    out.print(f"API key {key_id} revoked")


@app.command("roles")
def roles_command(url: Url = None) -> None:
    """List the roles, their clearance and permissions."""
    from layers.access import LEVELS, load_rules

    rules = load_rules(url=url)
    table = Table("role", "clearance", "permissions")
    for role, clearance in sorted(rules.roles.items(), key=lambda item: (item[1], item[0])):
        held = sorted(f"{p} {layer}" for r, layer, p in rules.permissions if r == role)
        table.add_row(role, f"{clearance} {LEVELS[clearance]}", ", ".join(held))
    out.print(table)


@app.command("layers")
def layers_command(url: Url = None) -> None:
    """List each layer's classification and the rows classified above it."""
    from layers.access import LEVELS, UNCLASSIFIED_LEVEL, load_rules
    from layers.catalog import COLLECTIONS

    rules = load_rules(url=url)
    table = Table("layer", "level", "rows above it")
    for layer_id in COLLECTIONS:
        level = rules.level(layer_id)
        note = "" if layer_id in rules.levels else f" (unclassified: taken as {UNCLASSIFIED_LEVEL})"
        rows = "; ".join(
            f"{r.attribute} in {', '.join(r.values)}: {r.level} {LEVELS[r.level]}"
            for r in rules.rows
            if r.layer == layer_id
        )
        table.add_row(layer_id, f"{level} {LEVELS[level]}{note}", rows)
    out.print(table)


@app.command("classify")
def classify_command(
    layer: Annotated[str, typer.Argument(help="Layer id.")],
    level: Annotated[int, typer.Argument(help="0 public, 1 general, 2 important, 3 core.")],
    url: Url = None,
) -> None:
    """Set a layer's classification."""
    from layers.access import LEVELS, RuleError, classify

    try:
        classify(layer, level, url=url)
    except RuleError as exc:
        raise _fail(str(exc)) from None
    _audit("admin", f"twin auth classify {layer} {level}", layer=layer, url=url)
    out.print(f"{layer}: level {level} ({LEVELS[level]})")


@app.command("permit")
def permit_command(
    role: Annotated[str, typer.Argument(help="Role.")],
    layer: Annotated[str, typer.Argument(help="Layer id, or * for every layer.")],
    permission: Annotated[str, typer.Argument(help="read, edit or admin.")],
    remove: Annotated[bool, typer.Option("--remove", help="Take the permission away.")] = False,
    url: Url = None,
) -> None:
    """Give a role a permission on a layer (or take it away with --remove)."""
    from layers.access import PERMISSIONS, RuleError, permit

    if permission not in PERMISSIONS:
        raise _fail(f"unknown permission {permission!r}: {', '.join(PERMISSIONS)}")
    try:
        permit(role, layer, permission, allow=not remove, url=url)
    except RuleError as exc:
        raise _fail(str(exc)) from None
    change = f"twin auth permit {role} {layer} {permission}{' --remove' if remove else ''}"
    _audit("admin", change, layer=None if layer == "*" else layer, url=url)
    out.print(f"{role}: {'no longer ' if remove else ''}{permission} {layer}")


@mask_app.command("list")
def mask_list(url: Url = None) -> None:
    """List the masks."""
    from layers.database import owner_cursor

    table = Table("id", "layer", "attribute", "method", "argument", "below", "role")
    with owner_cursor(url) as cur:
        cur.execute(
            "SELECT id, layer, attribute, method, step, keep_start, keep_end, level, role "
            "FROM access_masks ORDER BY layer, attribute, id"
        )
        for mask_id, layer, attribute, method, step, start, end, level, role in cur.fetchall():
            argument = (
                f"step {step:g}"
                if step is not None
                else f"keep {start or 0}+{end or 0}"
                if method == "partial"
                else ""
            )
            table.add_row(
                str(mask_id), layer, attribute, method, argument, str(level), role or "any"
            )
    out.print(table)


@mask_app.command("add")
def mask_add(
    layer: Annotated[str, typer.Argument(help="Layer id.")],
    attribute: Annotated[str, typer.Argument(help="Attribute, props, props.<key> or geom.")],
    method: Annotated[str, typer.Argument(help="hide, partial, round or snap.")],
    below: Annotated[int, typer.Option(help="Masked for clearances below this level.")],
    step: Annotated[
        float | None, typer.Option(help="round: the multiple; snap: the grid, m.")
    ] = None,
    keep_start: Annotated[int | None, typer.Option(help="partial: characters kept first.")] = None,
    keep_end: Annotated[int | None, typer.Option(help="partial: characters kept last.")] = None,
    role: Annotated[str | None, typer.Option(help="Only for this role.")] = None,
    url: Url = None,
) -> None:
    """Mask an attribute for callers below a clearance."""
    from layers.access import RuleError, add_mask

    try:
        mask_id = add_mask(
            layer,
            attribute,
            method,
            below=below,
            step=step,
            keep_start=keep_start,
            keep_end=keep_end,
            role=role,
            url=url,
        )
    except RuleError as exc:
        raise _fail(str(exc)) from None
    _audit(
        "admin",
        f"twin auth mask add {layer} {attribute} {method} --below {below}",
        layer=layer,
        url=url,
    )
    out.print(f"mask {mask_id}: {layer}.{attribute} {method} below level {below}")


@mask_app.command("remove")
def mask_remove(
    mask_id: Annotated[int, typer.Argument(help="The mask's id (twin auth mask list).")],
    url: Url = None,
) -> None:
    """Remove a mask."""
    from layers.access import remove_mask

    if not remove_mask(mask_id, url=url):
        raise _fail(f"no mask {mask_id}")
    _audit("admin", f"twin auth mask remove {mask_id}", url=url)
    out.print(f"mask {mask_id} removed")
