"""The city set-up page (``twin city init`` in the viewer's admin): ``POST /admin/city``, its job,
its refusals, and the page in Debian's Chromium.

A real server over a database of its own (the set-up writes a city), whose anonymous caller has
the real default role (``public``): an administrator signs in, a planner is refused. The extract
is central Helsinki's (tests/data/helsinki.py), clipped to Kamppi. Nothing sleeps: every step
waits on what the server or the page says it has done.
"""

from __future__ import annotations

import gzip
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser

from layers.database import get_engine
from layers.identity import add_user
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT, _fresh_database
from tests.data.helsinki import EXTRACT, KAMPPI

PASSWORD = "correct horse battery staple"
BOX = ",".join(str(v) for v in KAMPPI)
JOB_S = 300  # a deadline that only bounds a failure
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def admin_db() -> Iterator[str]:
    """A fresh, empty database: the set-up writes a city into it."""
    url = _fresh_database("_admin")
    yield url
    get_engine(url).dispose()


@pytest.fixture(scope="module")
def users(admin_db: str) -> dict[str, str]:
    """An administrator and a planner of the local issuer (names unique to this run)."""
    suffix = secrets.token_hex(3)
    names = {}
    for role in ("administrator", "planner"):
        names[role] = f"{role}-{suffix}"
        add_user(names[role], roles=[role], password=PASSWORD, url=admin_db)
    return names


@pytest.fixture(scope="module")
def server(admin_db: str) -> Iterator[str]:
    """The API over the admin database, the anonymous caller with the real default role."""
    env = {"TWIN_AUTH_ANONYMOUS_ROLE": "public", "TWIN_MQTT_URL": ""}
    with api_server(admin_db, root=ROOT, env=env) as address:
        yield address


def token(server: str, user: str) -> dict[str, str]:
    """Sign in; return the Authorization header."""
    answer = httpx.post(
        f"{server}/auth/token",
        data={"grant_type": "password", "username": user, "password": PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture(scope="module")
def admin(server: str, users: dict[str, str]) -> dict[str, str]:
    return token(server, users["administrator"])


def post_city(
    server: str,
    headers: dict[str, str],
    fields: dict[str, str],
    file: tuple[str, bytes] = ("Helsinki.osm.pbf", EXTRACT.read_bytes()),
) -> httpx.Response:
    files = {"file": (file[0], file[1], "application/octet-stream")}
    return httpx.post(f"{server}/admin/city", headers=headers, data=fields, files=files, timeout=60)


def finished(server: str, headers: dict[str, str], location: str) -> dict[str, Any]:
    """Wait until the job at ``location`` has ended; return it."""

    def ended() -> dict[str, Any] | None:
        job = httpx.get(f"{server}{location}", headers=headers).json()
        return job if job["state"] != "running" else None

    return wait_until(ended, timeout_s=JOB_S, what=f"the set-up at {location} ending")


def current_count(url: str, table: str) -> int:
    with get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE valid_to IS NULL")
            ).scalar_one()
        )


def test_propose_then_load(server: str, admin: dict[str, str], admin_db: str, users: dict) -> None:
    options = {"bbox": BOX, "district_grid_m": "250", "dry_run": "true"}
    proposed = post_city(server, admin, options)
    assert proposed.status_code == 202, proposed.text
    location = proposed.headers["Location"]
    assert location == f"/admin/city/jobs/{proposed.json()['id']}"
    assert proposed.json()["state"] == "running"
    job = finished(server, admin, location)
    assert job["state"] == "done", job
    plan = job["plan"]
    loads = {load["layer"]: load for load in plan["layers"]}
    assert loads["cameras"]["features"] == 92
    assert loads["districts"]["note"] == "a grid of 12 cells of 250 m (网格)"
    assert (plan["written"], plan["name"], plan["source"]) == (False, "Helsinki", EXTRACT.name)
    assert plan["metric_crs"] == "EPSG:32635"
    assert tuple(plan["bbox"]) == KAMPPI
    assert {gap["input"] for gap in plan["missing"]} >= {"dem", "resources"}
    assert job["progress"] is not None and job["progress"]["stage"]
    assert current_count(admin_db, "cameras") == 0  # a proposal writes nothing

    loaded = post_city(server, admin, {**options, "dry_run": "false"})
    assert loaded.status_code == 202, loaded.text
    job = finished(server, admin, loaded.headers["Location"])
    assert job["state"] == "done", job
    plan = job["plan"]
    loads = {load["layer"]: load for load in plan["layers"]}
    assert plan["written"] is True
    assert loads["cameras"]["features"] == loads["cameras"]["added"] == 92
    assert loads["buildings"]["cut"] == 26 and loads["buildings"]["dropped"] == 299
    assert current_count(admin_db, "cameras") == 92
    assert current_count(admin_db, "districts") == 12
    with get_engine(admin_db).connect() as conn:
        name = conn.execute(sa.text("SELECT name FROM city_settings")).scalar()
        audited = conn.execute(
            sa.text(
                "SELECT actor, layer, status, request FROM audit_log WHERE action = 'admin' "
                "ORDER BY id"
            )
        ).all()
    assert name == "Helsinki"
    assert [(a, layer, s) for a, layer, s, _ in audited] == [
        (users["administrator"], None, 200),
        (users["administrator"], None, 200),
    ]
    assert "dry run" in audited[0][3] and "(load)" in audited[1][3]


def test_a_failed_set_up_says_why(server: str, admin: dict[str, str]) -> None:
    # a boundary the extract does not hold: found only once the file is read
    started = post_city(server, admin, {"boundary": "Atlantis", "dry_run": "true"})
    assert started.status_code == 202, started.text
    job = finished(server, admin, started.headers["Location"])
    assert job["state"] == "failed"
    assert "Atlantis" in job["error"]
    assert "Traceback" not in job["error"] and "/tmp/" not in job["error"]
    assert job["plan"] is None


def problem_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    return dict(answer.json())


def test_anonymous_is_asked_to_sign_in(server: str) -> None:
    refused = problem_of(post_city(server, {}, {"dry_run": "true"}), 401)
    assert "administrator" in refused["detail"]
    problem_of(httpx.get(f"{server}/admin/city/jobs/nothing"), 401)


def test_another_role_is_refused(server: str, users: dict[str, str]) -> None:
    planner = token(server, users["planner"])
    refused = problem_of(post_city(server, planner, {"dry_run": "true"}), 403)
    assert users["planner"] in refused["detail"] and "admin" in refused["detail"]
    problem_of(httpx.get(f"{server}/admin/city/jobs/nothing", headers=planner), 403)


NOT_OSM = b"# notes\nnot a map at all\n" * 10


@pytest.mark.parametrize(
    ("fields", "file", "parameter", "message"),
    [
        ({}, ("notes.txt", NOT_OSM), "file", "not an OpenStreetMap extract by its name"),
        ({}, ("notes.osm.pbf", NOT_OSM), "file", "OSMHeader"),
        ({}, ("notes.osm", NOT_OSM), "file", "<osm>"),
        ({}, ("notes.osm.gz", NOT_OSM), "file", "not gzip data"),
        ({}, ("notes.osm.gz", gzip.compress(NOT_OSM)), "file", "<osm>"),
        ({}, ("notes.osm.bz2", NOT_OSM), "file", "not bzip2 data"),
        ({}, ("empty.osm.pbf", b""), "file", "is empty"),
        ({"bbox": "24.9,60.1,25.0"}, ..., "bbox", "expected four numbers"),
        ({"bbox": "a,b,c,d"}, ..., "bbox", "expected four numbers"),
        ({"bbox": "25,60,24,61"}, ..., "bbox", "min below max"),
        ({"bbox": BOX, "boundary": "Kamppi"}, ..., "bbox", "not both"),
        ({"metric_crs": "EPSG:4326"}, ..., "metric_crs", "not a projected CRS in metres"),
        ({"metric_crs": "EPSG:nonsense"}, ..., "metric_crs", "unknown CRS"),
        ({"district_grid_m": "1"}, ..., "district_grid_m", "10 m to 50 km"),
        ({"district_grid_m": "many"}, ..., "district_grid_m", "10 m to 50 km"),
        ({"dry_run": "maybe"}, ..., "dry_run", "expected true or false"),
        ({"replace": "2"}, ..., "replace", "expected true or false"),
        ({"colour": "blue"}, ..., "colour", "unknown field"),
        ({"name": "x" * 5000}, ..., "name", "longer than"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    server: str,
    admin: dict[str, str],
    fields: dict[str, str],
    file: Any,
    parameter: str,
    message: str,
) -> None:
    extract = ("Helsinki.osm.pbf", EXTRACT.read_bytes())
    answer = post_city(
        server, admin, {"dry_run": "true", **fields}, extract if file is ... else file
    )
    refused = problem_of(answer, 400)
    assert refused["parameter"] == parameter
    assert message in refused["detail"]
    assert "Traceback" not in refused["detail"]


def test_not_a_form_and_no_file(server: str, admin: dict[str, str]) -> None:
    refused = problem_of(
        httpx.post(f"{server}/admin/city", headers=admin, json={"dry_run": True}), 415
    )
    assert "multipart/form-data" in refused["detail"]
    answer = httpx.post(f"{server}/admin/city", headers=admin, files={"dry_run": (None, "true")})
    assert problem_of(answer, 400)["parameter"] == "file"


def test_unknown_job_is_404(server: str, admin: dict[str, str]) -> None:
    answer = httpx.get(f"{server}/admin/city/jobs/nothing", headers=admin)
    assert problem_of(answer, 404)["parameter"] == "job_id"


def test_one_set_up_at_a_time(server: str, admin: dict[str, str]) -> None:
    """While an upload is under way, another set-up is refused 409; afterwards it is taken."""
    host = urlparse(server)
    boundary = "b" + secrets.token_hex(8)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="slow.osm.pbf"\r\n\r\n'
    ).encode()
    request = (
        f"POST /admin/city HTTP/1.1\r\nHost: {host.netloc}\r\n"
        f"Authorization: {admin['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + 10_000_000}\r\n\r\n"
    ).encode()
    with socket.create_connection((host.hostname, host.port)) as slow:
        slow.sendall(request + head + EXTRACT.read_bytes()[:1000])  # and no more, for now

        def refused() -> bool:
            # a form with no file: if it came first, it is refused 400 and frees the slot
            answer = httpx.post(f"{server}/admin/city", headers=admin, files={"x": (None, "1")})
            return answer.status_code == 409

        wait_until(refused, timeout_s=30, what="a second set-up refused while one uploads")
        answer = httpx.post(f"{server}/admin/city", headers=admin, files={"x": (None, "1")})
        assert "under way" in problem_of(answer, 409)["detail"]
    # the slow upload's connection is gone: the slot is free again
    wait_until(
        lambda: (
            httpx.post(f"{server}/admin/city", headers=admin, files={"x": (None, "1")}).status_code
            == 400
        ),
        timeout_s=30,
        what="the slot freed once the upload's connection closed",
    )


def test_the_page_proposes_and_shows_the_report(
    browser: Browser, server: str, users: dict[str, str]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server}/admin/city")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        page.fill("#signin-user", users["administrator"])
        page.fill("#signin-password", PASSWORD)
        page.click("#signin-submit")
        page.wait_for_function(
            "(user) => window.twinAdmin.state().user === user", arg=users["administrator"]
        )
        page.set_input_files("#file", str(EXTRACT))
        page.fill("#bbox", BOX)
        page.fill("#district_grid_m", "250")
        assert "预览" in page.inner_text("#propose") and "导入" in page.inner_text("#load")
        page.click("#propose")
        page.wait_for_selector("#report-layers tbody tr[data-layer=cameras]", timeout=JOB_S * 1000)
        cells = page.locator("#report-layers tbody tr[data-layer=cameras] td").all_inner_texts()
        assert cells[:2] == ["cameras", "92"]
        headers = page.locator("#report-layers thead th").all_inner_texts()
        assert len(headers) == 9 and "note" in headers[-1]
        assert page.locator("#missing li[data-input=dem]").count() == 1
        state = page.evaluate("() => window.twinAdmin.state()")
        assert state["phase"] == "done" and state["job"]["dry_run"] is True
        assert "未写入" in page.inner_text("#progress")
        assert not errors
    finally:
        context.close()


def test_the_page_and_its_script_are_served_here(server: str) -> None:
    html = httpx.get(f"{server}/admin/city")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "http" not in html.text.split("<body>")[0]  # nothing fetched from elsewhere
    script = httpx.get(f"{server}/admin/admin.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    # the bundle set-up builds from api/static/src/admin.js and the sign-in it shares
    assert Path(ROOT / "api" / "static" / "build" / "admin.js").read_text() == script.text
    assert "citytwin.session" in script.text and "http" not in script.text.replace(
        "XMLHttpRequest", ""
    )
