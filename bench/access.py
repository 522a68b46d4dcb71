"""Access-control benchmark: tile throughput with sign-in, masking and audit on vs off.

Not a test. Loads the sample city into a scratch database and serves it three ways, each drives
by ``wrk`` over the same vector tiles (``pipelines``, a general-level layer: every read of it
is audited; and ``buildings``, a public one) cached (the tile cache warmed first) and uncached
(cache off), at concurrency 1 and 8:

- ``before``: the release before access control (git ``--before``, default the commit before
  it), in a worktree, as the peer;
- ``off``: this code with nobody signing in (the anonymous caller holds the administrator's
  role: no token to verify, nothing masked) and the audit off;
- ``on``: this code with a planner's bearer token on every request (an Ed25519 JWT verified
  each time), its masks applied in SQL (``depth_m`` hidden), and every tile audited.

The goal (issue 13): ``on`` no more than 10% slower than ``off`` for cached tiles.

Usage: ``python bench/access.py [--seconds 4] [--rounds 5] [--before REV]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from serving import free_port, start, tiles  # noqa: E402

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from layers.identity import add_user, issue_token, users  # noqa: E402
from twin.sample import load_sample  # noqa: E402

LUA = """
local paths = {}
for line in io.lines(os.getenv("TILE_PATHS")) do paths[#paths + 1] = line end
local auth = os.getenv("TILE_AUTH")
local headers = {}
if auth ~= "" then headers["Authorization"] = auth end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
"""


def wrk(base: str, paths: list[str], auth: str, connections: int, seconds: int) -> float:
    """Tiles per second over ``paths`` from ``base``, with an Authorization header if given."""
    out_dir = HERE / "out"
    listing = out_dir / "access-paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = out_dir / "access.lua"
    script.write_text(LUA)
    out = subprocess.run(
        [
            *("wrk", "-t", str(min(connections, 2)), "-c", str(connections)),
            *("-d", f"{seconds}s", "-s", str(script), base),
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"TILE_PATHS": str(listing), "TILE_AUTH": auth},
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {base}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def _answers(address: str) -> bool:
    """Whether a tile is in the tileset (its limits leave out tiles with nothing near)."""
    try:
        urllib.request.urlopen(address).close()
    except urllib.error.HTTPError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="Length of one wrk run, s.")
    parser.add_argument("--rounds", type=int, default=5, help="Runs per server, median kept.")
    parser.add_argument("--before", default="36b2b95", help="Revision of the peer (before).")
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    url = base.set(database=f"{base.database}_bench_access").render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    load_sample(url=url)
    if not any(u.name == "bench-planner" for u in users(url=url)):
        add_user("bench-planner", roles=["planner"], password="bench", url=url)
    planner = next(u for u in users(url=url) if u.name == "bench-planner")
    bearer = f"Bearer {issue_token(planner, ttl_s=3600, url=url).access_token}"
    get_engine(url).dispose()

    worktree = Path(tempfile.mkdtemp(prefix="twin-before-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), args.before],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    common = {"TWIN_DATABASE_URL": url, "TWIN_MQTT_URL": ""}
    configs = {
        "before": (worktree, {"TWIN_AUTH_ANONYMOUS_ROLE": "administrator"}, ""),
        "off": (ROOT, {"TWIN_AUTH_ANONYMOUS_ROLE": "administrator", "TWIN_AUDIT": "false"}, ""),
        "on": (ROOT, {"TWIN_AUTH_ANONYMOUS_ROLE": "public", "TWIN_AUDIT": "true"}, bearer),
    }
    processes = []
    addresses: dict[tuple[str, str], str] = {}
    try:
        for name, (root, env, _) in configs.items():
            for cache, mb in (("cached", "512"), ("uncached", "0")):
                port = free_port()
                address = f"http://127.0.0.1:{port}"
                command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
                command += ["--port", str(port), "--log-level", "warning"]
                process = subprocess.Popen(
                    command,
                    env=os.environ
                    | common
                    | env
                    | {"TWIN_TILE_CACHE_MB": mb, "PYTHONPATH": str(root)},
                    cwd=root,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                processes.append(process)
                start(["true"], {}, f"{address}/health")  # waits for the server to answer
                addresses[(name, cache)] = address
        print(
            f"tiles over the sample city, z12-z15; median of {args.rounds} wrk runs of "
            f"{args.seconds} s per server, tiles/s"
        )
        print(f"{'layer':10} {'cache':9} {'c':>3} " + "".join(f"{n:>10}" for n in configs))
        for layer in ("pipelines", "buildings"):
            paths = [
                f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"
                for z, x, y in tiles(range(12, 16))
            ]
            paths = [p for p in paths if _answers(addresses[("off", "uncached")] + p)]
            for cache in ("cached", "uncached"):
                if cache == "cached":  # warm each server's cache with its own caller's tiles
                    for name, (_, _, auth) in configs.items():
                        for path in paths:
                            request = urllib.request.Request(addresses[(name, cache)] + path)
                            if auth:
                                request.add_header("Authorization", auth)
                            urllib.request.urlopen(request).read()
                for connections in (1, 8):
                    # rounds in turn, each server in a rotating order: the machine's drift
                    # falls on every server alike; the median of the rounds is printed
                    runs: dict[str, list[float]] = {name: [] for name in configs}
                    order = list(configs)
                    for round_ in range(args.rounds):
                        for name in order[round_ % 3 :] + order[: round_ % 3]:
                            address, auth = addresses[(name, cache)], configs[name][2]
                            runs[name].append(wrk(address, paths, auth, connections, args.seconds))
                    rates = {name: statistics.median(values) for name, values in runs.items()}
                    cells = "".join(f"{rates[n]:10.1f}" for n in configs)
                    slower = 1 - rates["on"] / rates["off"]
                    print(
                        f"{layer:10} {cache:9} {connections:3d} {cells}   on vs off: "
                        f"{slower:+.1%} slower, off vs before {rates['off'] / rates['before']:.2f}x"
                    )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
        drop_database(url)


if __name__ == "__main__":
    main()
