"""The viewer signs in: Debian's Chromium, headless, against a server whose anonymous caller has
the real default role (``public``).

An anonymous page lists only public layers; signing in as an emergency commander rebuilds the
layers (no reload) and every request carries the token; a wrong password shows the API's
reason; a reload keeps the session (sessionStorage); a token the API refuses shows the form
with its reason and the map goes on anonymously; signing out takes the hidden layers away.
Nothing sleeps: every step waits on what the page says it has done (``twinViewer.events()``,
``twinViewer.auth()``, ``twinViewer.settled()``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, Request, Response

from layers.identity import REVOCATION_REFRESH_S, add_user
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT

PASSWORD = "correct horse battery staple"
WIDTH, HEIGHT = 1200, 800
SETTLE_S = 90  # deadlines only bound a failure (software WebGL on a busy machine is slow)
STEP_S = 30  # a sign-in, a sign-out, a panel drawn again
SETTLED = "() => Boolean(window.twinViewer && window.twinViewer.settled())"
AUTH = "() => window.twinViewer && window.twinViewer.auth()"
# a view of Monaco where the sample city has pipelines, close enough (zoom >= 15) to ask for them
PIPES_VIEW = {"longitude": 7.4246, "latitude": 43.7384, "zoom": 16.5}
HIDDEN = "pipelines"  # classified above public: an anonymous caller must not see it


@pytest.fixture(scope="module")
def public_server(sample_db: str) -> Iterator[str]:
    """The sample city served with the real anonymous role (tests/conftest.py sets another)."""
    with api_server(sample_db, root=ROOT, env={"TWIN_AUTH_ANONYMOUS_ROLE": "public"}) as address:
        yield address


@pytest.fixture(scope="module")
def commander(sample_db: str) -> str:
    """An emergency commander of the local issuer (a name unique to this run)."""
    name = f"commander-{secrets.token_hex(3)}"
    add_user(name, roles=["emergency_commander"], password=PASSWORD, url=sample_db)
    return name


@dataclass
class Seen:
    """The answers the page got from the twin: (path, query, status, Authorization header)."""

    responses: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # path, Authorization
    errors: list[str] = field(default_factory=list)

    def request(self, request: Request) -> None:
        self.requests.append((urlparse(request.url).path, request.headers.get("authorization")))

    def response(self, response: Response) -> None:
        url = urlparse(response.url)
        header = response.request.headers.get("authorization")
        self.responses.append((url.path, url.query, response.status, header))

    def of(self, path: str) -> list[tuple[str, str, int, str | None]]:
        return [r for r in self.responses if r[0] == path]


class SignInViewer:
    """A page on the viewer, with what it asked for and what it said on its console."""

    def __init__(self, browser: Browser, address: str):
        self.address = address
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.page: Page = self.context.new_page()
        self.seen = Seen()
        self.page.on("request", self.seen.request)
        self.page.on("response", self.seen.response)
        self.page.on("pageerror", lambda error: self.seen.errors.append(str(error)))
        self.open()

    def open(self) -> None:
        self.page.goto(self.address + "/")
        self.until(
            "() => window.twinViewer && window.twinViewer.events().accessApplied >= 1",
            what="the page reading what its caller may do",
        )
        self.settle("on opening")

    def until(self, script: str, arg: Any = None, *, what: str, timeout_s: float = STEP_S) -> Any:
        """Wait until ``script(arg)`` is truthy in the page; fail saying ``what`` and the state."""
        try:
            return wait_until(
                lambda: self.page.evaluate(script, arg), timeout_s=timeout_s, what=what
            )
        except AssertionError as error:
            state = self.page.evaluate(
                "() => window.twinViewer && {auth: window.twinViewer.auth(),"
                " status: window.twinViewer.status()}"
            )
            raise AssertionError(f"{error}; the viewer: {state}") from None

    def settle(self, why: str) -> None:
        self.until(SETTLED, what=f"the map settling {why}", timeout_s=SETTLE_S)

    def events(self) -> dict[str, int]:
        return dict(self.page.evaluate("() => window.twinViewer.events()"))

    def auth(self) -> dict[str, Any]:
        return dict(self.page.evaluate(AUTH))

    def panel_layers(self) -> set[str]:
        """The layers the panel offers (its checkboxes)."""
        boxes = self.page.locator("#layers input[data-layer]")
        return {str(boxes.nth(i).get_attribute("data-layer")) for i in range(boxes.count())}

    def look_at(self, view: dict[str, float]) -> None:
        self.page.evaluate("(view) => window.twinViewer.lookAt(view)", view)
        self.settle(f"at {view}")

    def sign_in(self, user: str, password: str, *, count: str) -> None:
        """Fill the form and send it once; wait until the page counts ``count`` once more."""
        before = self.events()[count]
        self.page.fill("#signin-user", user)
        self.page.fill("#signin-password", password)
        self.page.click("#signin-submit")
        self.until(
            f"(n) => window.twinViewer.events().{count} > n",
            before,
            what=f"the page counting {count} after signing in as {user}",
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def viewer(browser: Browser, public_server: str) -> Iterator[SignInViewer]:
    page = SignInViewer(browser, public_server)
    yield page
    page.close()


def test_anonymous_page_lists_no_hidden_layer(viewer: SignInViewer) -> None:
    state = viewer.auth()
    assert state["signedIn"] is False and state["roles"] == ["public"], state
    assert HIDDEN not in state["readable"] and "roads" in state["readable"], state
    offered = viewer.panel_layers()
    assert "roads" in offered and "buildings" in offered, offered
    assert not offered & {HIDDEN, "pipe_nodes", "cameras", "power_lines", "incidents"}, offered
    bounds = viewer.page.evaluate(
        "(layer) => window.twinViewer.state.config.tilesets[layer].bounds", HIDDEN
    )
    assert bounds is None, bounds
    # the form, in the browser's language (Playwright's Chromium asks for en-US)
    assert viewer.page.evaluate("() => document.documentElement.lang") == "en"
    assert viewer.page.locator("#signin-submit").inner_text() == "Sign in"
    assert "User" in viewer.page.locator("#signin").inner_text()
    assert "Password" in viewer.page.locator("#signin").inner_text()
    viewer.look_at(PIPES_VIEW)
    # the map never asked for a layer it may not read, so nothing answered 401
    assert not viewer.seen.of(f"/collections/{HIDDEN}/items")
    refused = [r for r in viewer.seen.responses if r[2] == 401]
    assert not refused, refused
    assert viewer.page.locator("#signin-error").is_hidden()
    assert not viewer.seen.errors, viewer.seen.errors


def test_sign_in_shows_hidden_layers_with_the_token(viewer: SignInViewer, commander: str) -> None:
    viewer.sign_in(commander, PASSWORD, count="signIns")
    state = viewer.auth()
    assert state["signedIn"] and state["user"] == commander, state
    assert state["roles"] == ["emergency_commander"], state
    assert HIDDEN in viewer.panel_layers()  # no reload: the panel was drawn again
    # the extents of the layers it may now read (an anonymous caller is told none)
    bounds = viewer.page.evaluate(
        "(layer) => window.twinViewer.state.config.tilesets[layer].bounds", HIDDEN
    )
    assert bounds and len(bounds) == 4, bounds
    who = viewer.page.locator("#signin-who").inner_text()
    # the role in plain words (locales/en/core.json role.emergency_commander)
    assert commander in who and "emergency commander" in who, who
    assert viewer.page.locator("#signout").inner_text() == "Sign out"
    token = viewer.page.evaluate(
        "() => JSON.parse(sessionStorage.getItem('citytwin.session')).token"
    )
    viewer.look_at(PIPES_VIEW)
    pipes = viewer.seen.of(f"/collections/{HIDDEN}/items")
    assert pipes, "no pipeline tile was asked for once signed in"
    assert all(r[3] == f"Bearer {token}" for r in pipes), pipes
    assert all(r[2] == 200 for r in pipes), pipes
    # the combined vector tiles go with the token too (deck.gl's loaders: loadOptions.fetch)
    tiles = [r for r in viewer.seen.responses if r[0].startswith("/map/tiles/") and r[2] == 200]
    late = [r for r in tiles if r[3] == f"Bearer {token}"]
    assert late, f"no vector tile carried the token: {tiles[-3:]}"
    # the push stream is opened with it
    streams = viewer.seen.of("/live/events")
    assert any(f"access_token={token}" in r[1] for r in streams), streams
    # a reload keeps the session (sessionStorage)
    viewer.open()
    assert viewer.auth()["user"] == commander
    assert HIDDEN in viewer.panel_layers()
    assert not viewer.seen.errors, viewer.seen.errors


def test_wrong_password_shows_the_reason(viewer: SignInViewer, commander: str) -> None:
    viewer.sign_in(commander, "not the password", count="signInErrors")
    error = viewer.page.locator("#signin-error")
    assert error.is_visible()
    # the API's problem detail, word for word
    assert "invalid user name or password" in error.inner_text(), error.inner_text()
    assert viewer.auth()["signedIn"] is False
    assert HIDDEN not in viewer.panel_layers()
    assert viewer.page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None


def test_sign_out_takes_hidden_layers_away(viewer: SignInViewer, commander: str) -> None:
    viewer.sign_in(commander, PASSWORD, count="signIns")
    assert HIDDEN in viewer.panel_layers()
    token = viewer.page.evaluate(
        "() => JSON.parse(sessionStorage.getItem('citytwin.session')).token"
    )
    before = viewer.events()["signOuts"]
    viewer.page.click("#signout")
    viewer.until(
        "(n) => window.twinViewer.events().signOuts > n",
        before,
        what="the page signing out (its access read again, the token revoked)",
    )
    state = viewer.auth()
    assert state["signedIn"] is False and state["roles"] == ["public"], f"{state} {viewer.events()}"
    assert HIDDEN not in viewer.panel_layers()
    assert viewer.page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None
    assert viewer.page.locator("#signin-submit").is_visible()
    # the token was revoked at the issuer: it no longer opens anything (a server refuses a
    # revoked token within REVOCATION_REFRESH_S)
    revoked = viewer.seen.of("/auth/revoke")
    assert [r[2] for r in revoked] == [200], revoked

    def refused() -> bool:
        answer = viewer.page.request.get(
            f"{viewer.address}/auth/me", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status == 401

    wait_until(refused, timeout_s=REVOCATION_REFRESH_S + STEP_S, what="the revoked token refused")
    # and the map, anonymous again, asks for no hidden layer (requests made while signed in
    # may still be answered: none goes without the token)
    pipes = f"/collections/{HIDDEN}/items"
    asked = len(viewer.seen.requests)
    viewer.look_at({**PIPES_VIEW, "zoom": 17})
    assert not [r for r in viewer.seen.requests[asked:] if r[0] == pipes]
    unsigned = [r for r in viewer.seen.requests if r[0] == pipes and r[1] != f"Bearer {token}"]
    assert not unsigned, (unsigned, viewer.seen.of(pipes)[-5:])
    assert not viewer.seen.errors, viewer.seen.errors


def test_refused_token_shows_the_form_and_the_map_goes_on(viewer: SignInViewer) -> None:
    # a token the API refuses (expired, revoked, forged) kept from an earlier visit
    viewer.page.evaluate(
        "() => sessionStorage.setItem('citytwin.session',"
        " JSON.stringify({token: 'not-a-token', user: 'someone', roles: ['administrator']}))"
    )
    viewer.open()
    state = viewer.auth()
    assert state["signedIn"] is False and state["roles"] == ["public"], state
    error = viewer.page.locator("#signin-error")
    assert error.is_visible() and "The session has ended" in error.inner_text(), error.inner_text()
    assert viewer.page.locator("#signin-submit").is_visible()
    assert viewer.page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None
    assert "roads" in viewer.panel_layers() and HIDDEN not in viewer.panel_layers()
