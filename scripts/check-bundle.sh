#!/usr/bin/env bash
# Prove the offline bundle: in a fresh clone, with pip's index, npm's registry and apt's sources
# all pointed at an address that does not answer, `make demo` installing from the bundle serves
# the sample city (GET /collections answers). Also resolves the bundle's Debian packages on a
# minimal Debian using the bundle alone (apt-get --simulate), since this machine has them already.
#   bash scripts/check-bundle.sh [path/to/citytwin-bundle.tar]   (default: dist/, made if absent)
# CHECK_DIR: where the clone goes (default: a new temporary directory, removed afterwards);
# CHECK_FILES: working-tree files copied over the clone (default: every modified or untracked
# file git knows of, so that uncommitted work is checked too; "" for none). Uses the database
# twin_bundle_check (dropped afterwards) and a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
say() { printf '\033[1m[check-bundle]\033[0m %s\n' "$*"; }

BUNDLE=${1:-dist/citytwin-bundle.tar}
if [ ! -f "$BUNDLE" ]; then
    say "no $BUNDLE: making it (make bundle)"
    t0=$(date +%s)
    BUNDLE_OUT=$BUNDLE bash scripts/bundle.sh
    say "make bundle took $(( $(date +%s) - t0 )) s"
fi
BUNDLE=$(cd "$(dirname "$BUNDLE")" && pwd)/$(basename "$BUNDLE")
say "bundle $BUNDLE: $(du -h "$BUNDLE" | cut -f1)"

DB=postgresql://postgres@127.0.0.1:5432/twin_bundle_check
ADMIN=postgresql://postgres@127.0.0.1:5432/postgres
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ -n "${CHECK_DIR:-}" ]; then
    CLONE=$CHECK_DIR
    TMP=""
else
    TMP=$(mktemp -d)
    CLONE=$TMP/citytwin
fi
DEMO_PID=""
cleanup() {
    if [ -n "$DEMO_PID" ]; then
        # make demo's process group (make, twin serve): asked to stop, then stopped after 30 s
        kill -TERM -- "-$DEMO_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 -- "-$DEMO_PID" 2>/dev/null || break; sleep 1; done
        if kill -0 -- "-$DEMO_PID" 2>/dev/null; then
            say "twin serve did not stop within 30 s of SIGTERM: killing it"
            kill -KILL -- "-$DEMO_PID" 2>/dev/null || true
        fi
        wait "$DEMO_PID" 2>/dev/null || true
    fi
    psql "$ADMIN" -qc 'DROP DATABASE IF EXISTS twin_bundle_check WITH (FORCE)' >/dev/null 2>&1 || true
    [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT

# --- 1. the Debian packages resolve from the bundle alone on a minimal Debian -----------------
APT_DIR=$(mktemp -d)
tar -xf "$BUNDLE" -C "$APT_DIR" citytwin-bundle/manifest.json citytwin-bundle/apt
python3 scripts/minimal-status.py "$APT_DIR/minimal-status"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
echo "deb [trusted=yes] file:$APT_DIR/citytwin-bundle/apt ./" >"$APT_DIR/sources.list"
APT=(-o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache::archives=$APT_DIR/archives"
    -o "Dir::Cache=$APT_DIR" -o "Dir::State::status=$APT_DIR/minimal-status"
    -o Debug::NoLocking=1 -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
apt-get update -q "${APT[@]}" >/dev/null
mapfile -t APT_PKGS < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["apt_packages"]))' "$APT_DIR/citytwin-bundle/manifest.json")
n=$(apt-get install -s "${APT[@]}" "${APT_PKGS[@]}" | grep -c '^Inst ')
say "apt: ${APT_PKGS[*]} install on a minimal Debian from the bundle alone ($n packages)"
rm -rf "$APT_DIR"

# --- 2. a fresh clone, no registry, make demo from the bundle ----------------------------------
say "cloning into $CLONE"
git clone -q "$REPO" "$CLONE"
if [ -z "${CHECK_FILES+set}" ]; then
    CHECK_FILES=$(git ls-files -m -o --exclude-standard)
fi
for f in $CHECK_FILES; do
    mkdir -p "$CLONE/$(dirname "$f")"
    cp -p "$f" "$CLONE/$f"
done
psql "$ADMIN" -qc 'DROP DATABASE IF EXISTS twin_bundle_check WITH (FORCE)' >/dev/null
cat >"$CLONE/.no-registry.apt.conf" <<'EOF'
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "-";
Acquire::http::Proxy "http://127.0.0.1:9/";
EOF
say "make demo in the clone, TWIN_BUNDLE=$BUNDLE, every registry at http://127.0.0.1:9/ (port $PORT)"
t0=$(date +%s)
(
    cd "$CLONE"
    exec setsid env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS -u PIP_CONSTRAINT \
        PIP_INDEX_URL=http://127.0.0.1:9/ PIP_CONFIG_FILE=/dev/null \
        npm_config_registry=http://127.0.0.1:9/ APT_CONFIG="$CLONE/.no-registry.apt.conf" \
        TWIN_BUNDLE="$BUNDLE" TWIN_DATABASE_URL="$DB" \
        make demo HOST=127.0.0.1 PORT="$PORT"
) >"$CLONE.demo.log" 2>&1 &
DEMO_PID=$!
deadline=$(( $(date +%s) + ${CHECK_TIMEOUT:-1200} ))
until curl -sf "http://127.0.0.1:$PORT/collections" -o "$CLONE.collections.json"; do
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then
        cat "$CLONE.demo.log" >&2
        echo "check-bundle: make demo ended before /collections answered (log above)" >&2
        exit 1
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
        cat "$CLONE.demo.log" >&2
        echo "check-bundle: /collections did not answer within ${CHECK_TIMEOUT:-1200} s" >&2
        exit 1
    fi
    sleep 2
done
grep '\[setup\]' "$CLONE.demo.log" || true
count=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["collections"]))' "$CLONE.collections.json")
[ "$count" -gt 0 ] || { echo "check-bundle: /collections lists no collection" >&2; exit 1; }
say "OK: the clone, set up from the bundle alone, serves $count collections of the sample city after $(( $(date +%s) - t0 )) s"
