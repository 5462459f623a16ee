#!/bin/sh
# Installs the Debian packages Licol needs, and only those missing.
# Usage: tools/install-deps.sh [run|test|bench]
#   run    build and run the server (default)
#   test   also the test tools: cmocka, an SMTP server, clang for fuzzing,
#          Chromium and Node.js for the browser tests
#   bench  also the benchmark tools: wrk, nginx, hyperfine
# Safe to run again: it does nothing when everything is installed.
set -eu

level=${1:-run}
packages="build-essential cmake pkg-config liblua5.4-dev libuv1-dev libsqlite3-dev
libcsv-dev libcurl4-openssl-dev node-llhttp libsodium-dev libjansson-dev sqlite3"
case "$level" in
run) ;;
test) packages="$packages libcmocka-dev python3 python3-aiosmtpd clang libclang-rt-dev
chromium nodejs npm curl" ;;
bench) packages="$packages libcmocka-dev python3 python3-aiosmtpd wrk nginx-light hyperfine
curl" ;;
*) echo "Utilisation : $0 [run|test|bench]" >&2; exit 2 ;;
esac

# installed PACKAGE: true when the package is installed, or, for the
# Node.js tools, when the command exists (some machines have Node.js from
# another source, whose nodejs package already contains npm).
installed() {
    case "$1" in
    nodejs) command -v node >/dev/null 2>&1 && return 0 ;;
    npm) command -v npm >/dev/null 2>&1 && return 0 ;;
    esac
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "Installation des paquets manquants :$missing"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "Erreur : ces paquets manquent et il faut être root (ou avoir sudo) pour les installer :$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
