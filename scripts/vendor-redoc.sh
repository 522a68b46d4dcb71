#!/usr/bin/env bash
# Fetch ReDoc's standalone bundle from the npm registry, once, for the API's offline /redoc page
# (Swagger UI's assets come with the swagger-ui-bundle-v2 Python package). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
REDOC_VERSION=${REDOC_VERSION:-2.5.4}
TARGET=api/static/vendor/redoc.standalone.js
[ -s "$TARGET" ] && exit 0
command -v npm >/dev/null || { echo "vendor-redoc: npm is missing" >&2; exit 1; }
PACK=$(mktemp -d)
trap 'rm -rf "$PACK"' EXIT
(cd "$PACK" && timeout 300 npm pack "redoc@$REDOC_VERSION" --silent >/dev/null)
tar xzf "$PACK"/redoc-*.tgz -C "$PACK" package/bundles/redoc.standalone.js
mkdir -p "$(dirname "$TARGET")"
cp "$PACK/package/bundles/redoc.standalone.js" "$TARGET"
echo "[setup] ReDoc $REDOC_VERSION's bundle in $TARGET"
