#!/usr/bin/env bash
# Set up what CityTwin needs on this machine, skipping whatever is already done:
#   PostgreSQL (installed and running, when the database is local), PostGIS and pgRouting,
#   GDAL's command-line tools, a .venv with the project, and the migrated database.
# Runs as root (or with sudo available) on Debian/Ubuntu. Idempotent.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv
PYTHON=${PYTHON:-python3}
DB_URL=${TWIN_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/twin}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
sha256() { "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' "$@"; }

# --- an offline bundle (make bundle), when there is one: no registry is asked for anything ---
# TWIN_BUNDLE=path/to/citytwin-bundle.tar, or dist/citytwin-bundle.tar when it is there. A bundle
# made from other lock files than these is refused when named, and passed over when only found.
BUNDLE=${TWIN_BUNDLE:-}
BUNDLE_DIR=.state/bundle
if [ -z "$BUNDLE" ] && [ -f dist/citytwin-bundle.tar ]; then
    BUNDLE=dist/citytwin-bundle.tar
    BUNDLE_FOUND=1
fi
if [ -n "$BUNDLE" ]; then
    [ -f "$BUNDLE" ] || { echo "setup: TWIN_BUNDLE=$BUNDLE: no such file" >&2; exit 1; }
    BUNDLE=$(cd "$(dirname "$BUNDLE")" && pwd)/$(basename "$BUNDLE")
    want_locks="$(sha256 requirements/lock.txt) $(sha256 requirements/oracles.lock.txt) $(sha256 package-lock.json)"
    have_locks=$(tar -xOf "$BUNDLE" --occurrence=1 citytwin-bundle/manifest.json |
        "$PYTHON" -c 'import json, sys; m = json.load(sys.stdin)["locks"]; print(m["requirements/lock.txt"], m["requirements/oracles.lock.txt"], m["package-lock.json"])')
    if [ "$want_locks" != "$have_locks" ]; then
        if [ -n "${BUNDLE_FOUND:-}" ]; then
            say "passing over $BUNDLE: it was made from other lock files (make bundle again)"
            BUNDLE=""
        else
            echo "setup: $BUNDLE was made from other lock files than requirements/ and" >&2
            echo "       package-lock.json here: make a new one with make bundle" >&2
            exit 1
        fi
    else
        say "installing from the bundle $BUNDLE (no registry)"
    fi
fi
bundle_unpack() {
    # once per bundle: .state/bundle holds the unpacked archive and the sha256 it came from
    local id
    id=$(sha256 "$BUNDLE")
    if [ "$(cat "$BUNDLE_DIR/.unpacked" 2>/dev/null)" != "$id" ]; then
        say "unpacking the bundle into $BUNDLE_DIR"
        rm -rf "$BUNDLE_DIR"
        mkdir -p "$BUNDLE_DIR"
        tar -xf "$BUNDLE" -C "$BUNDLE_DIR" --strip-components=1
        printf '%s\n' "$id" >"$BUNDLE_DIR/.unpacked"
    fi
}

APT_UPDATED=0
APT_OPTS=()
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ] && [ -n "$BUNDLE" ]; then
        # the bundle's Debian packages as the only source, in lists of its own (the system's
        # sources and lists are left alone)
        bundle_unpack
        local repo
        repo=$(cd "$BUNDLE_DIR/apt" && pwd)
        mkdir -p "$BUNDLE_DIR/apt-state/lists/partial" "$BUNDLE_DIR/apt-state/archives/partial"
        printf 'deb [trusted=yes] file:%s ./\n' "$repo" >"$BUNDLE_DIR/apt-state/sources.list"
        APT_OPTS=(-o "Dir::Etc::sourcelist=$PWD/$BUNDLE_DIR/apt-state/sources.list"
            -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$PWD/$BUNDLE_DIR/apt-state/lists"
            -o "Dir::Cache::archives=$PWD/$BUNDLE_DIR/apt-state/archives"
            -o APT::Get::List-Cleanup=0)
        say "apt-get update (the bundle's packages only)"
        $SUDO apt-get update -q "${APT_OPTS[@]}" >/dev/null
        APT_UPDATED=1
    elif [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${APT_OPTS[@]}" "$@" \
        >/dev/null
}

# pip_locked VENV LOCK: the lock's exact files (their hashes checked), from PyPI or the bundle
pip_locked() {
    local venv=$1 lock=$2
    if [ -n "$BUNDLE" ]; then
        bundle_unpack
        # the bundle's copy of the lock also names the wheels it built from locked sdists
        "$venv/bin/python" -m pip install -q --no-index --find-links "$BUNDLE_DIR/python/wheels" \
            --require-hashes -r "$BUNDLE_DIR/python/$(basename "$lock")"
    else
        "$venv/bin/python" -m pip install -q --require-hashes -r "$lock"
    fi
}

# --- PostgreSQL, only when the database is on this machine --------------------------------
host=$(printf '%s' "$DB_URL" | sed -E 's#^[a-z0-9+]+://([^@/]*@)?([^:/?]*).*#\2#')
local_db=0
case "$host" in ""|127.0.0.1|localhost|::1) local_db=1 ;; esac

if [ "$local_db" -eq 1 ]; then
    installed_here=0
    if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        apt_install postgresql
        installed_here=1
    fi
    PG_VERSION=$(ls /etc/postgresql | sort -n | tail -1)
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q .; then
        say "creating PostgreSQL $PG_VERSION cluster main"
        $SUDO pg_createcluster "$PG_VERSION" main >/dev/null
    fi
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q online; then
        say "starting PostgreSQL $PG_VERSION"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
    fi
    want=()
    ext=/usr/share/postgresql/$PG_VERSION/extension
    [ -f "$ext/postgis.control" ] || want+=("postgresql-$PG_VERSION-postgis-3")
    [ -f "$ext/pgrouting.control" ] || want+=("postgresql-$PG_VERSION-pgrouting")
    [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
    ready=0
    for _ in $(seq 1 30); do
        if pg_isready -q -h 127.0.0.1; then ready=1; break; fi
        sleep 1
    done
    if [ "$ready" -eq 0 ]; then
        echo "setup: PostgreSQL $PG_VERSION does not answer on 127.0.0.1" >&2
        exit 1
    fi
    # Debian's own cluster asks for a password over TCP. A cluster this script installed is the
    # demo's: let its postgres user in from this machine only. Any other cluster is left alone.
    libpq_url=$(printf '%s' "$DB_URL" | sed -E 's#^postgresql\+[a-z0-9]+://#postgresql://#')
    admin_url="${libpq_url%/*}/postgres"
    if ! psql "$admin_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
        if [ "$installed_here" -eq 1 ] || [ -n "${TWIN_TRUST_LOCAL:-}" ]; then
            hba=$(ls /etc/postgresql/"$PG_VERSION"/main/pg_hba.conf)
            say "letting postgres in from 127.0.0.1 and ::1 ($hba)"
            $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
            $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main reload
        else
            echo "setup: cannot log in to PostgreSQL with $DB_URL." >&2
            echo "       Put a password in TWIN_DATABASE_URL, or run again with TWIN_TRUST_LOCAL=1" >&2
            echo "       to let the postgres user in from 127.0.0.1 without one." >&2
            exit 1
        fi
    fi
fi

# --- GDAL command-line tools (ogrinfo, ogr2ogr): tests and benchmarks use them as peers ----
command -v ogr2ogr >/dev/null || apt_install gdal-bin

# --- Redis, for the shared tile cache (tests check it; the API uses it when TWIN_REDIS_URL) --
if [ -z "${TWIN_REDIS_URL:-}" ] || printf '%s' "$TWIN_REDIS_URL" | grep -Eq '//(127\.0\.0\.1|localhost)'; then
    command -v redis-server >/dev/null || apt_install redis-server
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        say "starting Redis on 127.0.0.1:6379"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/twin.log
        for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
    fi
fi

# --- Mosquitto, the MQTT broker of the live twin (SensorThings' MQTT extension) ---------------
MQTT_URL=${TWIN_MQTT_URL-mqtt://127.0.0.1:1883}
if printf '%s' "$MQTT_URL" | grep -Eq '//(127\.0\.0\.1|localhost)(:1883)?/?$'; then
    command -v mosquitto >/dev/null || apt_install mosquitto mosquitto-clients
    if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
        say "starting Mosquitto on 127.0.0.1:1883"
        mkdir -p /var/log/mosquitto
        mosquitto -d -p 1883 2>>/var/log/mosquitto/twin.log || mosquitto -d 2>>/var/log/mosquitto/twin.log
        for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.5; done
    fi
fi

# --- the project's virtual environment ------------------------------------------------------
if [ -d "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    say "removing a broken $VENV (no pip)"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 has the venv module but not ensurepip until python3-venv is installed
    if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then apt_install python3-venv python3-dev; fi
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# From the lock (requirements/lock.txt, `make lock` writes it from pyproject.toml): every file's
# hash is checked; the project itself goes in without its dependencies and with the locked
# setuptools as its build backend. The stamp holds the hashes of what it was installed from.
stamp="lock $(sha256 requirements/lock.txt) pyproject $(sha256 pyproject.toml)"
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
    say "installing the locked dependencies and the project into $VENV"
    pip_locked "$VENV" requirements/lock.txt
    "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
    printf '%s\n' "$stamp" >"$VENV/.installed"
fi

# --- the oracles' environment: WNTR and pandapower, which the utility-trace tests compare with
ORACLES=.venv-oracles
# (locked from tests/oracles-requirements.txt into requirements/oracles.lock.txt by make lock)
stamp="lock $(sha256 requirements/oracles.lock.txt)"
if [ "$(cat "$ORACLES/.installed" 2>/dev/null)" != "$stamp" ]; then
    say "installing the test oracles (WNTR, pandapower) into $ORACLES"
    [ -x "$ORACLES/bin/python" ] || "$PYTHON" -m venv "$ORACLES"
    pip_locked "$ORACLES" requirements/oracles.lock.txt
    printf '%s\n' "$stamp" >"$ORACLES/.installed"
fi

# --- the viewer's scripts, bundled from the npm packages package-lock.json pins -------------
# `npm ci` installs exactly the locked tree (each tarball checked against the lock's integrity;
# from the offline bundle's npm cache when there is one), then esbuild bundles the viewer and the
# set-up page into api/static/build (each also gzipped once) and copies ReDoc's standalone
# bundle into api/static/vendor (scripts/build-viewer.mjs). The browser fetches nothing else.
built_stamp="npm $(sha256 package-lock.json $(find scripts/build-viewer.mjs api/static/src -type f | sort))"
if [ "$(cat .state/viewer.built 2>/dev/null)" != "$built_stamp" ] \
    || [ ! -s api/static/build/viewer.js ] || [ ! -s api/static/vendor/redoc.standalone.js ]; then
    command -v npm >/dev/null || apt_install npm
    mkdir -p .state
    if [ "$(cat node_modules/.installed 2>/dev/null)" != "$(sha256 package-lock.json)" ]; then
        if [ -n "$BUNDLE" ]; then
            bundle_unpack
            say "installing the viewer's npm packages from the bundle's npm cache"
            npm ci --offline --ignore-scripts --no-audit --no-fund --cache "$BUNDLE_DIR/npm-cache" --loglevel=error
        else
            say "installing the viewer's npm packages (package-lock.json) from the registry"
            npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
        fi
        sha256 package-lock.json >node_modules/.installed
    fi
    say "bundling the viewer (esbuild)"
    node scripts/build-viewer.mjs
    printf '%s\n' "$built_stamp" >.state/viewer.built
fi
command -v chromium >/dev/null || apt_install chromium
# the viewer speaks Chinese first: a CJK font, or the browser (and the exported PNG) draws boxes
fc-list :lang=zh family 2>/dev/null | grep -q . || apt_install fonts-noto-cjk

# --- the database: created and migrated ------------------------------------------------------
TWIN_DATABASE_URL="$DB_URL" "$VENV/bin/twin" db upgrade
