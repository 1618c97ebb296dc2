#!/usr/bin/env bash
# Installs and configures a daemonless container runtime for building and running the images
# without any registry: podman, buildah, runc, mmdebstrap (Debian packages), as root.
#
#   scripts/install_container_runtime.sh            # install + configure (idempotent)
#   scripts/install_container_runtime.sh --service  # ... and start podman's Docker-compatible
#                                                   # API on $MU2NET_PODMAN_SOCKET
#
# Configuration written (only if different, so reruns change nothing):
# - /etc/containers/containers.conf: runtime = "runc" (crun fails on hosts with hybrid
#   cgroups: "cgroups in hybrid mode not supported"), and default ulimits no higher than this
#   host's hard limits (podman's defaults exceed them on some VMs, and raising a limit is not
#   permitted; NPROC even failed at equal values, so it is set below the hard limit).
# - /etc/containers/storage.conf: the overlay driver under /var/lib/containers/storage
#   (vfs when overlay cannot be mounted here).
# --service starts `podman system service --time=0 unix://$SOCKET` in the background (unless
# one already answers) and waits until the socket answers; docker-py then reaches it with
# DOCKER_HOST=unix://$SOCKET. Its log: /run/podman/service.log.
set -euo pipefail

SOCKET="${MU2NET_PODMAN_SOCKET:-/run/podman/podman.sock}"
SERVICE=0
for arg in "$@"; do
  case "$arg" in
    --service) SERVICE=1 ;;
    *) echo "install_container_runtime.sh: unknown argument '$arg' (valid: --service)" >&2
       exit 2 ;;
  esac
done
if [ "$(id -u)" != "0" ]; then
  echo "install_container_runtime.sh: needs root (apt-get and /etc/containers); running as" \
       "uid $(id -u)" >&2
  exit 1
fi

PACKAGES="podman buildah runc mmdebstrap curl"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in $PACKAGES; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null \
    || { apt-get update -q >/dev/null \
         && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
fi

# Write a file only when its content changes (idempotent, and no needless service restarts).
put() {
  local path="$1" content="$2"
  if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" > "$path"
    echo "install_container_runtime: wrote $path"
  fi
}

# Ulimits: at most 1024 open files and 4096 processes, and below this host's hard limits.
hard_nofile="$(ulimit -Hn)"
hard_nproc="$(ulimit -Hu)"
nofile=1024
nproc=4096
if [ "$hard_nofile" != "unlimited" ] && [ "$hard_nofile" -lt "$nofile" ]; then
  nofile="$hard_nofile"
fi
if [ "$hard_nproc" != "unlimited" ] && [ "$hard_nproc" -le "$nproc" ]; then
  nproc=$((hard_nproc / 2))
fi
put /etc/containers/containers.conf "# written by mu2net scripts/install_container_runtime.sh
[containers]
default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=${nproc}:${nproc}\"]

[engine]
runtime = \"runc\""

driver=overlay
if ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
  driver=vfs
fi
put /etc/containers/storage.conf "# written by mu2net scripts/install_container_runtime.sh
[storage]
driver = \"${driver}\"
runroot = \"/run/containers/storage\"
graphroot = \"/var/lib/containers/storage\""

if ! podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null 2>&1; then
  echo "install_container_runtime.sh: podman is installed but 'podman info' fails:" >&2
  podman info >&2 || true
  exit 1
fi

if [ "$SERVICE" = "1" ]; then
  export DOCKER_HOST="unix://${SOCKET}"
  answers() { curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
  if ! answers; then
    mkdir -p "$(dirname "$SOCKET")"
    rm -f "$SOCKET"
    nohup podman system service --time=0 "unix://${SOCKET}" \
      > "$(dirname "$SOCKET")/service.log" 2>&1 &
    for _ in $(seq 1 50); do answers && break; sleep 0.2; done
    if ! answers; then
      echo "install_container_runtime.sh: podman system service did not answer on $SOCKET;" \
           "see $(dirname "$SOCKET")/service.log" >&2
      exit 1
    fi
    echo "install_container_runtime: podman API on unix://${SOCKET} (pid $!)"
  fi
fi
