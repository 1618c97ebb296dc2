#!/usr/bin/env bash
# Installs the Debian packages whose real data the demo tasks read: Fashion-MNIST (root task)
# and fonts for the rendered glyph tasks. As root: apt-get install. Otherwise the .deb files are
# fetched with `apt-get download` and unpacked with `dpkg -x` into data/debroot (the loaders look
# there too).
set -euo pipefail
PACKAGES="dataset-fashion-mnist fonts-dejavu-core fonts-urw-base35 fonts-freefont-ttf fonts-noto-core"
cd "$(dirname "$0")/.."
have_all() {
  for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || return 1; done
}
if have_all; then exit 0; fi
if [ "$(id -u)" = "0" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; }
else
  mkdir -p data/debs data/debroot
  (cd data/debs && apt-get download $PACKAGES)
  for f in data/debs/*.deb; do dpkg -x "$f" data/debroot; done
fi
