#!/usr/bin/env bash
# Stop the local SLURM that tests/slurm/start.sh STATE_DIR started: cancel its jobs, end exactly the daemons whose
# PIDs it recorded in STATE_DIR/pids, remove the configuration it wrote to /etc/slurm, and delete
# stale /run/slurm*.pid files.
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

STATE=${1:?usage: stop.sh STATE_DIR}
[ -f "$STATE/pids" ] || { echo "stop.sh: no $STATE/pids: nothing was started there"; exit 0; }
STATE=$(cd "$STATE" && pwd)
PIDS="$STATE/pids"

alive() {  # alive PID NAME: the process exists and is still the daemon we started (not a reused PID)
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

ETC=/etc/slurm
MARK="# written by firstlayer tests/slurm/start.sh"
OWNER="# logs, spool and database: $STATE"
unset SLURM_CONF
if grep -q '^slurmctld ' "$PIDS"; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true  # leaves no slurmstepd behind
    for _ in $(seq 50); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi

# SIGTERM to all of them at once (each takes about 2 s to shut down), SIGKILL to any still there after 10 s
while read -r name pid; do
    if alive "$pid" "$name"; then kill -TERM "$pid" 2>/dev/null; fi
done <"$PIDS"
for _ in $(seq 100); do
    running=0
    while read -r name pid; do
        if alive "$pid" "$name"; then running=1; fi
    done <"$PIDS"
    [ "$running" -eq 0 ] && break
    sleep 0.1
done
while read -r name pid; do
    if alive "$pid" "$name"; then
        echo "stop.sh: $name ($pid) ignored SIGTERM for 10 s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
done <"$PIDS"
: >"$PIDS"

for conf in slurm.conf gres.conf slurmdbd.conf; do
    # only the configuration start.sh wrote for this STATE_DIR (another start's stays)
    if [ -f "$ETC/$conf" ] && [ "$(head -n 2 "$ETC/$conf")" = "$MARK"$'\n'"$OWNER" ]; then rm -f "$ETC/$conf"; fi
done

# PID files of SLURM daemons that no longer run (a default configuration writes them to /run).
for file in /run/slurm*.pid /var/run/slurm*.pid; do
    [ -f "$file" ] || continue
    pid=$(cat "$file" 2>/dev/null)
    if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then rm -f "$file"; fi
done
echo "stopped the local SLURM of $STATE"
