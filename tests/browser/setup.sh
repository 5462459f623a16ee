#!/bin/sh
# Installs the browser-test driver (playwright-core from npm) once. The
# browser itself is Debian's chromium; playwright never downloads one.
set -eu
cd "$(dirname "$0")"
[ -f package.json ] || exit 0
if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund --silent
fi
