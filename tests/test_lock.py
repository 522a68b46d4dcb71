"""The locks agree with what they lock: pyproject.toml, tests/oracles-requirements.txt, package.json.

A dependency added to pyproject.toml without `make lock` fails here, naming it; so does a lock
line without hashes, and a viewer package whose version is not the one the code asks for.
"""

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
ORACLES_LOCK = ROOT / "requirements" / "oracles.lock.txt"
RELOCK = "the lock does not match; run `make lock` and commit requirements/ and package-lock.json"

#: the environments the locks are for: Linux x86_64, CPython 3.11.x (Debian 12 has 3.11.2)
TARGETS = [
    {
        "python_version": "3.11",
        "python_full_version": full,
        "implementation_version": full,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    for full in ("3.11.2", "3.11.7")
]


def read_lock(path: Path) -> dict[str, tuple[str, Marker | None, list[str]]]:
    """Pins of a requirements lock: canonical name -> (version, marker, hashes); raises on a
    line that pins nothing."""
    pins: dict[str, tuple[str, Marker | None, list[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        head, *hashes = line.split("--hash=")
        req = Requirement(head.strip())
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{path.name}: not pinned: {raw}"
        pins[canonicalize_name(req.name)] = (
            spec[0].version,
            req.marker,
            [h.strip() for h in hashes],
        )
    return pins


def applies(marker: Marker | None, extra: str = "") -> bool:
    """Whether a marker holds on some target environment."""
    return marker is None or any(marker.evaluate({**env, "extra": extra}) for env in TARGETS)


def unlocked(
    requirements: list[str], pins: dict[str, tuple[str, Marker | None, list[str]]]
) -> list[str]:
    """What of `requirements` the lock does not satisfy, one reason per line."""
    problems = []
    for text in requirements:
        req = Requirement(text)
        if not applies(req.marker):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{text}: not in the lock")
            continue
        version, marker, hashes = pins[name]
        if not req.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{text}: the lock pins {version}")
        if not hashes or not all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes):
            problems.append(f"{text}: {name}=={version} has no sha256 hashes")
        if not applies(marker):
            problems.append(f"{text}: the lock's {name} is only for {marker}")
    return problems


def pyproject_requirements(pyproject: dict) -> list[str]:
    """Every requirement pyproject.toml names: dependencies, every extra, the build system."""
    reqs = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        reqs += extra
    return reqs + list(pyproject["build-system"]["requires"])


def test_every_pyproject_dependency_is_pinned_with_hashes() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = pyproject_requirements(pyproject)
    assert len(requirements) > 40
    problems = unlocked(requirements, read_lock(LOCK))
    assert not problems, RELOCK + ":\n" + "\n".join(problems)


def test_the_extras_dependencies_are_locked_too() -> None:
    # psycopg[binary] needs psycopg-binary, pyjwt[crypto] cryptography: what the extra adds, read
    # from the installed distribution's own metadata
    pins = read_lock(LOCK)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    with_extras = [r for r in map(Requirement, pyproject_requirements(pyproject)) if r.extras]
    assert {canonicalize_name(r.name) for r in with_extras} >= {"psycopg", "pyjwt"}
    problems = []
    for req in with_extras:
        for extra in req.extras:
            needs = [
                text
                for text in importlib.metadata.requires(req.name) or []
                if Requirement(text).marker is not None
                and not applies(Requirement(text).marker)
                and applies(Requirement(text).marker, extra)
            ]
            assert needs, f"{req.name}[{extra}] adds nothing: is the extra's name right?"
            problems += [f"{req.name}[{extra}] -> {p}" for p in unlocked(needs, pins)]
    assert not problems, RELOCK + ":\n" + "\n".join(problems)


def test_a_dependency_added_without_relocking_is_named() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pyproject["project"]["dependencies"].append("no-such-package-citytwin>=1")
    pyproject["project"]["dependencies"].append("fastapi<0.1")
    problems = unlocked(pyproject_requirements(pyproject), read_lock(LOCK))
    assert problems == [
        "no-such-package-citytwin>=1: not in the lock",
        f"fastapi<0.1: the lock pins {read_lock(LOCK)['fastapi'][0]}",
    ]


def test_every_lock_line_is_pinned_with_hashes() -> None:
    for lock in (LOCK, ORACLES_LOCK):
        pins = read_lock(lock)
        assert len(pins) > 30, lock
        bare = [name for name, (_, _, hashes) in pins.items() if not hashes]
        assert not bare, f"{lock.name}: pins without hashes: {bare}; {RELOCK}"
        assert "make lock" in lock.read_text().splitlines()[1], "the header names `make lock`"


def test_the_oracles_lock_agrees_with_their_requirements() -> None:
    requirements = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "tests" / "oracles-requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert {"wntr==1.5.0", "pandapower==3.5.6"} <= set(requirements)
    problems = unlocked(requirements, read_lock(ORACLES_LOCK))
    assert not problems, RELOCK + ":\n" + "\n".join(problems)


def test_the_viewers_npm_packages_are_locked_with_integrity() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"], RELOCK
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"], RELOCK
    assert {"@deck.gl/core", "@deck.gl/layers", "@deck.gl/geo-layers", "i18next", "redoc"} <= set(
        package["dependencies"]
    )
    for name, version in {**package["dependencies"], **package["devDependencies"]}.items():
        if version[0].isdigit():  # pinned exactly
            assert lock["packages"][f"node_modules/{name}"]["version"] == version, RELOCK
    for path, entry in lock["packages"].items():
        if not path or entry.get("link"):
            continue
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", entry["integrity"]), (path, entry)
        assert entry["resolved"].startswith("https://registry.npmjs.org/"), (path, entry)
