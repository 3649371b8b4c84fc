#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost with accounting and two fake GPUs:  tests/slurm/start.sh STATE_DIR
# Its configuration goes to /etc/slurm (where every SLURM command looks, also the srun that the plugin runs inside
# each job, which drops SLURM_CONF); logs, spool and database go to STATE_DIR. It refuses to overwrite a
# configuration it did not write. The daemons' PIDs go to STATE_DIR/pids; tests/slurm/stop.sh STATE_DIR stops
# exactly those and removes the configuration. Runs as root (slurmd must).
# Ports: FIRSTLAYER_SLURM_PORT (default 16817) and the next three numbers.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

STATE=$(mkdir -p "${1:?usage: start.sh STATE_DIR}" && cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${FIRSTLAYER_SLURM_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
CLUSTER=firstlayer
PARTITION=${FIRSTLAYER_SLURM_PARTITION:-firstlayer}
HOST=$(hostname -s)
PIDS="$STATE/pids"
ETC=/etc/slurm
MARK="# written by firstlayer tests/slurm/start.sh"
OWNER="# logs, spool and database: $STATE"  # stop.sh removes only the configuration of its STATE_DIR

[ "$(id -u)" -eq 0 ] || { echo "start.sh: the local SLURM runs as root" >&2; exit 1; }
for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "start.sh: port $port is in use (another local SLURM running? tests/slurm/stop.sh STATE_DIR); " \
            "set FIRSTLAYER_SLURM_PORT to another base" >&2
        exit 1
    fi
done

# a fresh cluster each time: no jobs, accounting records or node state from an earlier start
rm -rf "${STATE:?}"/{db,spool,run}
mkdir -p "$STATE"/{log,run,spool/ctld,spool/d,db} "$ETC"
for conf in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "$ETC/$conf" ] && ! head -n 1 "$ETC/$conf" | grep -qx "$MARK"; then
        echo "start.sh: $ETC/$conf exists and is not ours: this machine has its own SLURM; not touching it" >&2
        exit 1
    fi
done
: >"$PIDS"
# If anything below fails, stop what was started so far.
trap 'status=$?; if [ $status -ne 0 ]; then echo "start.sh: failed, stopping what it started" >&2; "$HERE/stop.sh" "$STATE"; fi' EXIT

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "start.sh: timed out after ${seconds}s waiting for $what; logs in $STATE/log" >&2
    tail -n 20 "$STATE"/log/*.log >&2 || true
    return 1
}
started() { echo "$1 $2" >>"$PIDS"; }  # NAME PID

# --- MUNGE (authentication): the system's key and socket, munged as user munge; reuse a running one.
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        >"$STATE/log/munged.out" 2>&1 &
    started munged $!
    wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# --- MariaDB for slurmdbd: a private data directory, TCP on 127.0.0.1 only.
mariadb-install-db --no-defaults --datadir="$STATE/db" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
mariadbd --no-defaults --datadir="$STATE/db" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$STATE/run/mysqld.sock" --pid-file="$STATE/run/mysqld.pid" --skip-name-resolve \
    --log-error="$STATE/log/mariadb.log" >/dev/null 2>&1 &
started mariadbd $!
SQL=(mariadb --no-defaults --socket="$STATE/run/mysqld.sock" -u root)
wait_for 60 mariadbd "${SQL[@]}" -e "SELECT 1"
"${SQL[@]}" <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'firstlayer';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'firstlayer';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- SLURM configuration: one node (this machine) with most of its memory, at least 8 CPUs and two fake GPUs, so
# that jobs of the slurm profile's sizes (4-core groups, 2-core training) run side by side as on a small GPU node
# (config_overrides lets a 2-core machine declare 8: the jobs then share its cores).
CPUS=$(( $(nproc) > 8 ? $(nproc) : 8 ))
MEM=$(awk '/^MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
cat >"$ETC/slurm.conf" <<CONF
$MARK
$OWNER
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
DefMemPerCPU=1000
ReturnToService=2
MailProg=/bin/true
MinJobAge=300
GresTypes=gpu
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
# GPUs without a device: each needs a File (a Count without File drains the node); any character device will do.
printf '%s\n%s\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n' "$MARK" "$OWNER" >"$ETC/gres.conf"
touch "$ETC/slurmdbd.conf" && chmod 600 "$ETC/slurmdbd.conf"
cat >"$ETC/slurmdbd.conf" <<CONF
$MARK
$OWNER
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=firstlayer
StorageLoc=slurm_acct_db
CONF
unset SLURM_CONF  # every command reads /etc/slurm

# --- daemons: slurmdbd, the cluster in the accounting database, slurmctld, slurmd.
slurmdbd -D >"$STATE/log/slurmdbd.out" 2>&1 &
started slurmdbd $!
wait_for 60 slurmdbd sacctmgr -n show cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
slurmctld -D -i >"$STATE/log/slurmctld.out" 2>&1 &
started slurmctld $!
wait_for 60 slurmctld sh -c "scontrol ping | grep -q UP"
slurmd -D >"$STATE/log/slurmd.out" 2>&1 &
started slurmd $!
wait_for 60 "node $HOST idle" sh -c "sinfo -h -N -n '$HOST' -o %t | grep -qx idle"
echo "local SLURM up: cluster $CLUSTER, partition $PARTITION, node $HOST ($CPUS CPUs, ${MEM} MiB, 2 fake GPUs)"
