#!/usr/bin/env bash
# Install Debian's SLURM (single-node cluster on localhost), MUNGE and MariaDB (for slurmdbd accounting) if missing.
# Exit 0: installed; exit 77: cannot be installed here (not root, no apt-get, packages unavailable) — the tests skip.
set -uo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
COMMANDS=(munged slurmctld slurmd sbatch sacct sacctmgr slurmdbd mariadbd mariadb-install-db mariadb)

missing=0
for cmd in "${COMMANDS[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null || missing=1
done
[ "$missing" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})" >&2
    exit 77
fi
if ! command -v apt-get >/dev/null; then
    echo "SLURM is not installed and there is no apt-get to install it (Debian/Ubuntu: ${PACKAGES[*]})" >&2
    exit 77
fi

# Package scripts must not start daemons themselves: a temporary policy-rc.d forbids it (unless one is there).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# wait for a dpkg lock another install holds rather than failing
install() { apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${PACKAGES[@]}"; }
if ! install >/tmp/firstlayer-slurm-apt.log 2>&1; then
    # a fresh machine may have no (or stale) package lists
    if ! { apt-get update -q -o DPkg::Lock::Timeout=300 && install; } >>/tmp/firstlayer-slurm-apt.log 2>&1; then
        echo "apt-get could not install ${PACKAGES[*]} (log: /tmp/firstlayer-slurm-apt.log):" >&2
        tail -n 5 /tmp/firstlayer-slurm-apt.log >&2
        exit 77
    fi
fi
echo "installed ${PACKAGES[*]}"
