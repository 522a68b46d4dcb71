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

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
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
if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    say "installing the project into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    touch "$VENV/.installed"
fi

# --- the oracles' environment: WNTR and pandapower, which the utility-trace tests compare with
ORACLES=.venv-oracles
if [ ! -f "$ORACLES/.installed" ] || [ tests/oracles-requirements.txt -nt "$ORACLES/.installed" ]; then
    say "installing the test oracles (WNTR, pandapower) into $ORACLES"
    [ -x "$ORACLES/bin/python" ] || "$PYTHON" -m venv "$ORACLES"
    "$ORACLES/bin/python" -m pip install -q --upgrade pip
    "$ORACLES/bin/python" -m pip install -q -r tests/oracles-requirements.txt
    touch "$ORACLES/.installed"
fi

# --- the viewer's vector-tile worker and the browser the viewer's tests drive ----------------
# deck.gl's bundle (shipped by pydeck) parses vector tiles in loaders.gl's worker, which it would
# fetch from a CDN; the twin serves it itself, taken once from the npm registry at this version.
WORKER=api/static/vendor/mvt-worker.js
if [ ! -s "$WORKER" ]; then
    command -v npm >/dev/null || apt_install npm
    BUNDLE=$("$VENV/bin/python" -c 'import twin.deck as d; print(d.DECK_BUNDLE)')
    MVT_VERSION=$(grep -o '_loadersgl_.version="[0-9.]*"' "$BUNDLE" | head -1 | cut -d'"' -f2 || true)
    if [ -z "$MVT_VERSION" ]; then
        say "cannot read the loaders.gl version of deck.gl's bundle ($BUNDLE)" >&2
        exit 1
    fi
    say "fetching @loaders.gl/mvt@$MVT_VERSION's worker from npm for the viewer"
    PACK=$(mktemp -d)
    (cd "$PACK" && npm pack "@loaders.gl/mvt@$MVT_VERSION" --silent >/dev/null)
    tar xzf "$PACK"/*.tgz -C "$PACK" package/dist/mvt-worker.js
    mkdir -p "$(dirname "$WORKER")"
    cp "$PACK/package/dist/mvt-worker.js" "$WORKER"
    rm -rf "$PACK"
fi
command -v chromium >/dev/null || apt_install chromium
# ReDoc's bundle for the API's offline /redoc page (Swagger UI's come with a Python package)
if [ ! -s api/static/vendor/redoc.standalone.js ]; then
    command -v npm >/dev/null || apt_install npm
    bash scripts/vendor-redoc.sh
fi

# --- the database: created and migrated ------------------------------------------------------
TWIN_DATABASE_URL="$DB_URL" "$VENV/bin/twin" db upgrade
