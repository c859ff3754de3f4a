#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently: Debian packages first (only the
# missing ones, so a prepared machine pays one dpkg query), then npm packages when the lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  runc busybox-static umoci skopeo docker-registry etcd-server etcd-client iproute2 apache2-utils
  openssl curl gettext-base util-linux golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
)

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when package-lock.json is newer than the installed tree.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi
# kubectl 1.32 comes with the machine image (Google's apt repository), not from Debian: try apt
# where that repository is configured, otherwise say what is missing.
if ! command -v kubectl >/dev/null; then
  echo "install-deps: kubectl not found; trying apt-get install kubectl"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq kubectl >/dev/null 2>&1 || {
    echo "install-deps: kubectl (1.32) is required by the tests and could not be installed" >&2
    exit 1
  }
fi
echo "install-deps: ready"
