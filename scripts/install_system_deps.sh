#!/usr/bin/env bash
# Installs the Debian packages whose real data the demo tasks read: Fashion-MNIST (root task)
# and fonts for the rendered glyph tasks.
#
# As root: apt-get install. Otherwise (or with MU2NET_UNPACK_DEBS=1) each missing package's .deb
# is fetched with `apt-get download` into data/debs and unpacked with `dpkg -x` into
# data/debroot, where the loaders look after /usr/share (mu2net/tasks/locations.py). A package
# counts as present when dpkg has it installed (ignored with MU2NET_UNPACK_DEBS=1) or
# data/debroot/.unpacked/<package> exists (written only after a complete unpack), so the script
# is idempotent and safe to rerun after a failure.
#
# Chromium (headless, for the report's browser test, tests/test_report.py, and the report
# screenshot of benchmarks/task_sequence.py) is installed only as
# root with apt-get: its .deb needs its dependencies installed, not unpacked. Without it that
# test skips and says why.
set -euo pipefail
PACKAGES="dataset-fashion-mnist fonts-dejavu-core fonts-dejavu-extra fonts-urw-base35 fonts-freefont-ttf \
  fonts-noto-core"
cd "$(dirname "$0")/.."
DEBS=data/debs
DEBROOT=data/debroot

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
unpacked() { [ -f "$DEBROOT/.unpacked/$1" ]; }

UNPACK=0
if [ "$(id -u)" != "0" ] || [ "${MU2NET_UNPACK_DEBS:-0}" = "1" ]; then UNPACK=1; fi
if [ "$(id -u)" = "0" ] && ! installed chromium; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi
missing=""
for p in $PACKAGES; do
  if unpacked "$p"; then continue; fi
  # A forced unpack (MU2NET_UNPACK_DEBS=1) ignores system packages: it fills data/debroot.
  if [ "${MU2NET_UNPACK_DEBS:-0}" != "1" ] && installed "$p"; then continue; fi
  missing="$missing $p"
done
if [ -z "$missing" ]; then exit 0; fi

if [ "$UNPACK" = "0" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
  exit 0
fi

mkdir -p "$DEBS" "$DEBROOT/.unpacked"
for p in $missing; do
  deb=$(ls "$DEBS/${p}"_*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    if ! (cd "$DEBS" && apt-get download -q "$p" >/dev/null); then
      echo "install_system_deps: cannot download $p with apt-get download (are the apt package" \
           "lists present? as root: apt-get update)" >&2
      exit 1
    fi
    deb=$(ls "$DEBS/${p}"_*.deb | head -n 1)
  fi
  dpkg -x "$deb" "$DEBROOT"
  touch "$DEBROOT/.unpacked/$p"
done
