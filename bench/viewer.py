"""Time to the first useful map: the twin's viewer vs pydeck's own page of the same layers.

One run, on a scratch database holding the sample city. Both are drawn by deck.gl in Debian's
Chromium, headless with software WebGL, cache empty, every outside request blocked:

- twin: the viewer at ``/`` (deck.gl's npm modules and the page's own, bundled by esbuild at
  set-up; vector tiles and GeoJSON per tile, lazily, for the opening view), from navigation
  until every visible layer has loaded and drawn;
- peer: the page pydeck makes of the same layers (``City.map`` → ``twin.deck.to_html``: the
  layers' GeoJSON inlined whole, deck.gl from pydeck's bundle), from navigation until deck.gl
  has drawn it.

Prints the medians of five loads, what each transferred, the ratio, and the JavaScript the
viewer ships (its scripts as sent, gzipped by the API). Goals (issue 15): the first useful map
within 1.5 s, at least 2x faster than pydeck's page, and at most 1.5 MB of JavaScript gzipped.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import twin  # noqa: E402
from layers.database import database_url, drop_database, upgrade  # noqa: E402
from tests.conditions import api_server  # noqa: E402  (the API in its own process, as in tests)
from twin.deck import STYLES, to_html  # noqa: E402
from twin.sample import load_sample  # noqa: E402

RUNS = 5
ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]
LOADED = """() => {
  const v = window.twinViewer;
  if (!v || !v.state.deck) return false;
  const layers = v.state.deck.props.layers.filter((l) => l.props.visible);
  return layers.length > 0 && layers.every((l) => l.isLoaded);
}"""


def scratch_url() -> str:
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    return base.set(database=f"{base.database}_bench_viewer").render_as_string(hide_password=False)


def load(
    browser, address: str, *, viewer: bool, scripts: list[int] | None = None
) -> tuple[float, int, int]:
    """Load a page in a fresh context; return (seconds to the drawn map, bytes, requests).

    ``scripts`` collects the bytes of each JavaScript response as sent (gzipped).
    """
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    sizes: list[int] = []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(("http://127.0.0.1", "file://"))
            else route.abort()
        ),
    )

    def finished(request) -> None:
        size = request.sizes()["responseBodySize"]
        sizes.append(size)
        if scripts is not None and request.resource_type == "script":
            scripts.append(size)

    page.on("requestfinished", finished)
    started = time.perf_counter()
    page.goto(address)
    if viewer:
        page.evaluate("() => window.twinViewer.ready.then(() => true)")
        page.wait_for_function(LOADED, timeout=60_000, polling=20)
    else:  # pydeck's page: drawn once its canvas has had two frames after the load event
        page.wait_for_selector("canvas", timeout=60_000)
        page.evaluate(
            "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
    seconds = time.perf_counter() - started
    context.close()
    return seconds, sum(sizes), len(sizes)


def main() -> None:
    url = scratch_url()
    drop_database(url)
    upgrade(url)
    load_sample(directory=ROOT / "data_samples" / "monaco", url=url)
    visible = [s.layer for s in STYLES.values() if s.visible]
    page = Path(tempfile.mkdtemp()) / "pydeck.html"
    page.write_text(to_html(twin.connect(url).map(visible)), encoding="utf-8")
    try:
        with api_server(url, root=ROOT) as address, sync_playwright() as playwright:
            chromium = shutil.which("chromium")
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            scripts: list[int] = []
            load(browser, address + "/", viewer=True, scripts=scripts)  # warms the server's caches
            ours = [load(browser, address + "/", viewer=True) for _ in range(RUNS)]
            peer = [load(browser, page.as_uri(), viewer=False) for _ in range(RUNS)]
            browser.close()
    finally:
        drop_database(url)
    print("== time to the first useful map, sample city, 1200x800, cache empty, median of 5")
    print(f"layers shown on opening: {', '.join(visible)}")
    for name, runs in (
        ("twin viewer (tiles, lazily)", ours),
        ("pydeck page (GeoJSON whole)", peer),
    ):
        seconds = statistics.median(r[0] for r in runs)
        megabytes = statistics.median(r[1] for r in runs) / 1e6
        requests = statistics.median(r[2] for r in runs)
        print(f"{name:30s} {seconds:6.2f} s  {megabytes:6.1f} MB  {requests:4.0f} requests")
        print(f"  runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s")
    ratio = statistics.median(r[0] for r in peer) / statistics.median(r[0] for r in ours)
    first = statistics.median(r[0] for r in ours)
    print(
        f"ratio pydeck page / twin viewer: {ratio:.2f}x (goal >= 2x: "
        f"{'met' if ratio >= 2 else 'NOT met'}); first map {first:.2f} s (goal <= 1.5 s: "
        f"{'met' if first <= 1.5 else 'NOT met'})"
    )
    shipped = sum(scripts) / 1e6
    print(
        f"JavaScript shipped by the viewer: {shipped:.2f} MB gzipped in {len(scripts)} files "
        f"(goal <= 1.5 MB: {'met' if shipped <= 1.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
