#!/usr/bin/env bash
# Write ONE archive (dist/citytwin-bundle.tar) from which scripts/setup.sh installs CityTwin on a
# machine with no registry at all (TWIN_BUNDLE=path/to/citytwin-bundle.tar make demo):
#   python/  the wheels of every file the locks pin for Linux x86_64 / CPython 3.11 (a package
#            with only an sdist is built into a wheel here), and copies of the locks that also
#            name those built wheels' hashes;
#   npm-cache/  an npm cache holding every package package-lock.json pins for the viewer, from
#            which set-up's `npm ci --offline` installs (checked against the lock's integrity);
#   apt/     the Debian packages set-up installs, with everything they need (recommends too) on
#            top of a minimal Debian of this release, and a Packages index (a flat repository);
#   manifest.json  what is in it, the sha256 of every file, and the locks it was made from.
# Run on a machine of the same Debian release and architecture as the target, with registries.
# Knobs (for tests): BUNDLE_OUT, BUNDLE_PARTS ("python npm apt"), BUNDLE_LOCKS (lock files).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BUNDLE_OUT:-dist/citytwin-bundle.tar}
PARTS=${BUNDLE_PARTS:-python npm apt}
LOCKS=${BUNDLE_LOCKS:-requirements/lock.txt requirements/oracles.lock.txt}
PY=${PYTHON:-.venv/bin/python}
say() { printf '\033[1m[bundle]\033[0m %s\n' "$*"; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

"$PY" -c 'import packaging' 2>/dev/null || { echo "bundle: $PY has no packaging: make setup first" >&2; exit 1; }
start=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/citytwin-bundle.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/citytwin-bundle
mkdir -p "$ROOT"

# --- Python: the locks' files for this platform, from PyPI (not this machine's pip config) ----
if has_part python; then
    mkdir -p "$ROOT/python/wheels" "$WORK/sdists"
    platforms=()
    for v in 5 12 17 28 31 34 36; do platforms+=(--platform "manylinux_2_${v}_x86_64"); done
    platforms+=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64
        --platform manylinux2014_x86_64 --platform linux_x86_64)
    for lock in $LOCKS; do
        say "pip download: the files $lock pins, for Linux x86_64 / CPython 3.11"
        # the lock's lines whose markers hold on Linux x86_64 for some CPython 3.11.x
        "$PY" - "$lock" >"$WORK/pins.txt" <<'EOF'
import sys
from packaging.markers import Marker

envs = [{"python_version": "3.11", "python_full_version": full, "implementation_version": full,
         "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
         "os_name": "posix", "implementation_name": "cpython",
         "platform_python_implementation": "CPython", "extra": ""}
        for full in ("3.11.0", "3.11.2", "3.11.99")]
for line in open(sys.argv[1]).read().replace("\\\n", " ").splitlines():
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        continue
    head, _, hashes = line.partition(" --hash")
    req, _, marker = head.partition(";")
    if not marker.strip() or any(Marker(marker).evaluate(env) for env in envs):
        print(req.strip(), "--hash" + hashes)
EOF
        env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
            PIP_INDEX_URL="${PIP_INDEX_URL:-https://pypi.org/simple}" \
            "$PY" -m pip download -q --no-deps --require-hashes --prefer-binary \
            "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 \
            --abi none -d "$ROOT/python/wheels" -r "$WORK/pins.txt"
    done
    # a package published only as an sdist (its hash is in the lock): built into a wheel here
    for sdist in "$ROOT"/python/wheels/*.tar.gz "$ROOT"/python/wheels/*.zip; do
        [ -e "$sdist" ] || continue
        say "building a wheel from $(basename "$sdist") (no wheel on the index)"
        env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
            PIP_INDEX_URL="${PIP_INDEX_URL:-https://pypi.org/simple}" \
            "$PY" -m pip wheel -q --no-deps -w "$WORK/built" "$sdist"
        mv "$sdist" "$WORK/sdists/"
    done
    [ ! -d "$WORK/built" ] || mv "$WORK"/built/*.whl "$ROOT/python/wheels/"
    # copies of the locks naming the built wheels' hashes too, beside the sdists' they came from
    "$PY" - "$ROOT/python" "$WORK/sdists" $LOCKS <<'EOF'
import hashlib, pathlib, re, sys
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

out, sdists, locks = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
sdist_hashes = {hashlib.sha256(p.read_bytes()).hexdigest(): parse_sdist_filename(p.name)
                for p in sdists.iterdir()}
built = {}
for whl in (out / "wheels").glob("*.whl"):
    name, version, _, _ = parse_wheel_filename(whl.name)
    if (name, version) in sdist_hashes.values():
        built[(name, version)] = hashlib.sha256(whl.read_bytes()).hexdigest()
for lock in locks:
    text = pathlib.Path(lock).read_text()
    def extra(match: re.Match[str]) -> str:
        name, version = match.group(1), match.group(2)
        key = next((k for k in built if k[0] == canonicalize_name(name) and str(k[1]) == version), None)
        block = match.group(0)
        if key is None:
            return block
        return block + f" \\\n    --hash=sha256:{built[key]}"
    text = re.sub(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)[^\n]*(?:\\\n\s+--hash=sha256:[0-9a-f]+)+",
                  extra, text, flags=re.M)
    (out / pathlib.Path(lock).name).write_text(text)
EOF
fi

# --- npm: the viewer's locked packages, as an npm cache `npm ci --offline` installs from --------
if has_part npm; then
    say "npm ci into the bundle's npm cache (package-lock.json)"
    NPM_WORK=$(mktemp -d)
    cp package.json package-lock.json "$NPM_WORK"/
    (cd "$NPM_WORK" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
        --cache "$ROOT/npm-cache")
    rm -rf "$NPM_WORK" "$ROOT/npm-cache/_logs" "$ROOT/npm-cache/_update-notifier-last-checked"
fi

# --- apt: the packages set-up installs, and their closure over a minimal Debian ----------------
if has_part apt; then
    PG=$(apt-cache depends postgresql 2>/dev/null | grep -o 'postgresql-[0-9]*$' | head -1)
    PG=${PG#postgresql-}
    [ -n "$PG" ] || { echo "bundle: apt knows no postgresql package" >&2; exit 1; }
    APT_PKGS=(postgresql "postgresql-$PG-postgis-3" "postgresql-$PG-pgrouting" gdal-bin
        redis-server mosquitto mosquitto-clients python3-venv python3-dev chromium
        fonts-noto-cjk)
    printf '%s\n' "${APT_PKGS[@]}" >"$WORK/apt-packages"
    say "apt-get update"
    apt-get update -q >/dev/null
    # a minimal Debian: the Essential and required packages installed here, with what they need
    "$PY" scripts/minimal-status.py "$WORK/minimal-status"
    mkdir -p "$ROOT/apt/partial"
    say "apt-get download: ${APT_PKGS[*]} and what they need on a minimal Debian"
    apt-get install -q -y --download-only -o "Dir::State::status=$WORK/minimal-status" \
        -o "Dir::Cache::archives=$ROOT/apt" -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
        "${APT_PKGS[@]}" >/dev/null
    rm -rf "$ROOT/apt/partial" "$ROOT/apt/lock"
    # the flat repository's index, written with dpkg-deb alone (no dpkg-dev needed)
    "$PY" - "$ROOT/apt" <<'EOF'
import hashlib, pathlib, subprocess, sys
repo = pathlib.Path(sys.argv[1])
entries = []
for deb in sorted(repo.glob("*.deb")):
    control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                             text=True).stdout.rstrip("\n")
    data = deb.read_bytes()
    entries.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                   f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
(repo / "Packages").write_text("\n".join(entries))
EOF
fi

# --- the manifest, first in the archive --------------------------------------------------------
"$PY" - "$ROOT" "$WORK" $LOCKS <<'EOF'
import datetime, hashlib, json, pathlib, platform, sys
root, work, locks = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
sha = lambda p: hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
os_release = dict(l.split("=", 1) for l in open("/etc/os-release").read().splitlines() if "=" in l)
files = {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}
apt_list = work / "apt-packages"
manifest = {
    "format": 1,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "built_on": {"os": os_release.get("PRETTY_NAME", "").strip('"'), "machine": platform.machine()},
    "python": {"implementation": "CPython", "version": "3.11", "platform": "linux_x86_64"},
    "locks": {lock: sha(lock) for lock in [*locks, "package-lock.json"]},
    "built_from_sdist": sorted(p.name for p in (work / "sdists").iterdir()) if (work / "sdists").exists() else [],
    "apt_packages": apt_list.read_text().split() if apt_list.exists() else [],
    "files": files,
}
(root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
EOF
mkdir -p "$(dirname "$OUT")"
tar -cf "$OUT.part" -C "$WORK" citytwin-bundle/manifest.json
for part in python npm-cache apt; do
    [ ! -d "$ROOT/$part" ] || tar -rf "$OUT.part" -C "$WORK" "citytwin-bundle/$part"
done
mv "$OUT.part" "$OUT"
say "$OUT: $(du -h "$OUT" | cut -f1), $(tar -tf "$OUT" | grep -c '\.\(whl\|tgz\|deb\)$') packages, in $(( $(date +%s) - start )) s"
