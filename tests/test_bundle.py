"""The offline bundle's Python and npm parts, built by scripts/bundle.sh from a two-package lock.

The whole bundle (≈900 MB: every wheel, Chromium, PostgreSQL ...) is proved by
scripts/check-bundle.sh, too slow for `make test`; here the same script bundles a lock cut
from requirements/lock.txt — sly (PyPI has only its sdist, so the bundle builds the wheel) and
six (a wheel) — and the viewer's npm cache, then a fresh venv installs it with pip's index, and
`npm ci` the viewer's packages with npm's registry, pointed at an address that does not answer. Needs PyPI and the npm registry (as `make bundle`).
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.test_lock import LOCK, read_lock

ROOT = Path(__file__).resolve().parent.parent
DEAD = "http://127.0.0.1:9/"


def lock_entries(names: set[str]) -> str:
    """The entries of requirements/lock.txt for `names`, as uv wrote them (hashes included)."""
    out, keep = [], False
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            keep = line.split("==")[0] in names
        if keep and not line.lstrip().startswith("#"):
            out.append(line)
    return "\n".join(out) + "\n"


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "npm_config_"))}
    return {
        **env,
        "PIP_INDEX_URL": DEAD,
        "PIP_CONFIG_FILE": os.devnull,
        "npm_config_registry": DEAD,
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundle")
    lock = work / "small.lock.txt"
    lock.write_text(lock_entries({"sly", "six"}))
    out = work / "small-bundle.tar"
    env = {
        **os.environ,
        "BUNDLE_OUT": str(out),
        "BUNDLE_PARTS": "python npm",
        "BUNDLE_LOCKS": str(lock),
        "PYTHON": sys.executable,
    }
    run = subprocess.run(
        ["bash", "scripts/bundle.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "[bundle]" in run.stdout and "small-bundle.tar" in run.stdout
    with tarfile.open(out) as tar:
        assert tar.getnames()[0] == "citytwin-bundle/manifest.json", "the manifest comes first"
        tar.extractall(work, filter="data")
    return work


def test_the_manifest_names_every_file_and_the_locks(bundle: Path) -> None:
    root = bundle / "citytwin-bundle"
    manifest = json.loads((root / "manifest.json").read_text())
    lock = bundle / "small.lock.txt"
    assert manifest["locks"] == {
        str(lock): hashlib.sha256(lock.read_bytes()).hexdigest(),
        "package-lock.json": hashlib.sha256((ROOT / "package-lock.json").read_bytes()).hexdigest(),
    }
    assert manifest["built_from_sdist"] == ["sly-0.4.tar.gz"]
    on_disk = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert manifest["files"] == on_disk
    wheels = sorted(name.split("/")[-1] for name in on_disk if name.endswith(".whl"))
    assert wheels == ["six-1.17.0-py2.py3-none-any.whl", "sly-0.4-py3-none-any.whl"]


def test_npm_ci_installs_the_locked_tree_from_the_bundles_cache_with_no_registry(
    bundle: Path, tmp_path: Path
) -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    for name in ("package.json", "package-lock.json"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    cache = bundle / "citytwin-bundle" / "npm-cache"
    run = subprocess.run(
        [
            "npm",
            "ci",
            "--offline",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--cache",
            str(cache),
        ],
        cwd=tmp_path,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    # every package the lock pins for this platform is installed, at the locked version
    installed = {
        path: json.loads((tmp_path / path / "package.json").read_text())["version"]
        for path in lock
        if path and (tmp_path / path / "package.json").exists()
    }
    wanted = {
        path: entry["version"]
        for path, entry in lock.items()
        if path and not entry.get("optional") and not entry.get("link")
    }
    assert {path: installed.get(path) for path in wanted} == wanted
    assert "node_modules/@deck.gl/core" in wanted and "node_modules/esbuild" in wanted


def test_a_venv_installs_from_the_bundle_with_no_index(bundle: Path) -> None:
    root = bundle / "citytwin-bundle"
    venv = bundle / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--require-hashes"]
    pip += ["--find-links", str(root / "python" / "wheels")]
    # the repository's lock alone does not know the wheel built from sly's sdist: refused
    refused = subprocess.run(
        [*pip, "-r", str(bundle / "small.lock.txt")],
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "sly" in refused.stderr and "hash" in refused.stderr.lower()
    # the bundle's copy of the lock names it (beside the sdist's hash it was built from)
    bundled = root / "python" / "small.lock.txt"
    sly = read_lock(bundled)["sly"]
    assert read_lock(bundle / "small.lock.txt")["sly"][2] == sly[2][:-1]
    installed = subprocess.run(
        [*pip, "-r", str(bundled)], env=offline_env(), capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr
    versions = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sly, six; print(sly.__version__, six.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert versions.stdout.split() == ["0.4", "1.17.0"]
