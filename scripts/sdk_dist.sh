#!/usr/bin/env bash
# Build and check the SDKs' release artifacts (docs/release.md): the Python wheel and sdist,
# checked by twine, and the npm tarball, followed by npm's dry-run publish. Nothing is uploaded.
#   scripts/sdk_dist.sh [OUTDIR]    (default dist/sdk; `make sdk-dist` runs it)
# The TypeScript SDK must be built first (`make sdk-ts`). The wheel is built without isolation,
# from the build tools in .venv (make install-dev), so building needs no download.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$repo/dist/sdk}")"
python="${PYTHON:-$repo/.venv/bin/python}"

rm -rf "$out"
mkdir -p "$out"
"$python" -m build --no-isolation --outdir "$out" "$repo/sdks/python"
"$python" -m twine check --strict "$out"/*.whl "$out"/*.tar.gz
cd "$repo/sdks/typescript"
test -f dist/index.js || { echo "build the TypeScript SDK first: make sdk-ts" >&2; exit 1; }
npm pack --silent --pack-destination "$out"
npm publish --dry-run --ignore-scripts --tag dry-run --loglevel=warn
ls -1 "$out"
