#!/usr/bin/env bash
# End-to-end checks of the community page, as CI runs them on a fresh machine.
# Assumes `cargo build` has already been run (target/debug/stoa, or STOA_BIN).
# Installs Debian's Chromium if missing, the page's and the e2e tests' npm
# dependencies, then runs the page's unit tests and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

STOA_BIN="${STOA_BIN:-$PWD/target/debug/stoa}"
export STOA_BIN
if [ ! -x "$STOA_BIN" ]; then
  echo "e2e: $STOA_BIN is missing; run \`cargo build\` first" >&2
  exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
/usr/bin/chromium --version 2>/dev/null || true

echo "== npm ci (web, e2e)"
(cd web && npm ci --no-audit --no-fund)
(cd e2e && npm ci --no-audit --no-fund)

echo "== node --test web/test/"
node --test web/test/

echo "== node --test e2e/ (headless Chromium)"
rm -rf e2e/artifacts
mkdir -p e2e/artifacts
node --test --test-concurrency=1 e2e/
echo "== e2e passed; screenshots in e2e/artifacts/"
