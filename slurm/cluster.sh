#!/usr/bin/env bash
# A real one-node Slurm cluster (munge, MariaDB + slurmdbd accounting, slurmctld, slurmd) on this
# machine, for the integration test and for trying `--executor slurm` without a cluster.
#
#   slurm/cluster.sh install  # only install Debian's packages (munge, slurm*, mariadb-server-core) if missing
#   slurm/cluster.sh up       # install them if missing, start what is not running, wait until the node is idle
#   slurm/cluster.sh down     # cancel its jobs, stop exactly the daemons it started (by pid file)
#   slurm/cluster.sh status   # each daemon's pid and state, then sinfo
#   slurm/cluster.sh env      # the line to eval:  eval "$(slurm/cluster.sh env)"
#
# Everything (configs, munge key, MariaDB data, state, spool, logs, sockets, pid files) lives under
# $HARNESS_SLURM_DIR (default /tmp/harness-slurm); nothing is written to /etc or started through
# systemd. Needs root (the daemons and the jobs run as root) and, when the packages are missing,
# apt-get. Idempotent: `up` on a running cluster only checks it; a second `down` does nothing.
# Ports: $HARNESS_SLURM_PORT (slurmctld, default 16817), +1 slurmd, +2 slurmdbd.
set -euo pipefail

DIR="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
CLUSTER="${HARNESS_SLURM_CLUSTER:-harness}"
PORT="${HARNESS_SLURM_PORT:-16817}"
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server-core)
NODE="$(hostname -s)"
ETC="$DIR/etc" RUN="$DIR/run" LOG="$DIR/log"
MUNGE_SOCKET="$RUN/munge.socket"
MYSQL_SOCKET="$RUN/mysql/mysqld.sock"
export SLURM_CONF="$ETC/slurm.conf"
# daemon name -> pid file, in start order (stopped in reverse)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf '%s\n' "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }
pidfile() { echo "$RUN/$1.pid"; }

# pid of daemon $1 if it is running (not a zombie) and is that program; else nothing.
alive_pid() {
  local file pid state comm
  file="$(pidfile "$1")"
  [ -s "$file" ] || return 1
  pid="$(tr -dc 0-9 2>/dev/null <"$file")" 2>/dev/null || return 1  # the daemon may remove it as it exits
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
  state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" || return 1
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [ "$comm" = "$1" ] || return 1  # a recycled pid that belongs to something else
  echo "$pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2" i
  shift 2
  for ((i = 0; i < limit * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not come up within ${limit}s (logs: $LOG)"
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get to install them"
  [ "$(id -u)" = 0 ] || die "packages missing (${missing[*]}); installing them needs root"
  # one installer at a time (two clusters coming up at once), then look again
  exec 9>"/tmp/.harness-slurm-install.lock"
  flock -w 900 9 || die "another slurm/cluster.sh has been installing for 15 minutes"
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { flock -u 9; return 0; }
  log "installing ${missing[*]}"
  mkdir -p "$LOG"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packaged services (munge, slurmctld, ...) from starting on their default configs: a
  # policy-rc.d that denies every start, only while installing and only if the machine has none.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# slurm/cluster.sh: no service starts while installing\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=1
  fi
  local rc=0 apt=(apt-get -o DPkg::Lock::Timeout=300)  # wait for another apt/dpkg instead of failing
  if ! timeout 600 "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1; then
    timeout 300 "${apt[@]}" update -qq >>"$LOG/apt.log" 2>&1 || true
    timeout 600 "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >>"$LOG/apt.log" 2>&1 || rc=$?
  fi
  [ "$ours" = 1 ] && rm -f "$policy"
  flock -u 9
  [ "$rc" = 0 ] || die "apt-get install ${missing[*]} failed (see $LOG/apt.log)"
}

write_configs() {
  local cpus mem
  cpus="$(nproc)"
  # RealMemory at ~90% of what slurmd sees: more drains the node
  mem="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
  mem="$(( ${mem:-1024} * 9 / 10 ))"
  [ -s "$ETC/munge.key" ] || { dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none; }
  chmod 400 "$ETC/munge.key"
  cat >"$ETC/slurm.conf" <<EOF
# written by slurm/cluster.sh: a one-node cluster under $DIR
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus ))
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
JobRequeue=1
KillWait=2
MinJobAge=600
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
# written by slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db_$CLUSTER
EOF
  chmod 600 "$ETC/slurmdbd.conf"  # slurmdbd refuses a readable config
}

start_munged() {
  alive_pid munged >/dev/null && return 0
  [ -s "$DIR/munge.seed" ] || : >"$DIR/munge.seed"
  munged --force --socket="$MUNGE_SOCKET" --key-file="$ETC/munge.key" --log-file="$LOG/munged.log" \
    --pid-file="$(pidfile munged)" --seed-file="$DIR/munge.seed"
  wait_for 10 munged alive_pid munged
}

start_mariadbd() {
  alive_pid mariadbd >/dev/null && return 0
  # Debian's mariadb-server-core has no system tables to install, so the server runs without grant
  # tables; it listens on no port, and its socket sits in a root-only (0700) folder.
  mkdir -p "$DIR/mysql" "$RUN/mysql"
  chmod 700 "$DIR/mysql" "$RUN/mysql"
  setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$MYSQL_SOCKET" --skip-networking \
    --skip-grant-tables --pid-file="$(pidfile mariadbd)" --log-error="$LOG/mariadb.log" \
    --innodb-buffer-pool-size=32M --innodb-log-file-size=16M </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadbd test -S "$MYSQL_SOCKET"
  wait_for 10 "mariadbd pid file" alive_pid mariadbd
}

start_slurmdbd() {
  alive_pid slurmdbd >/dev/null && return 0
  # slurmdbd reaches MariaDB through its private socket (libmariadb reads MYSQL_UNIX_PORT)
  MYSQL_UNIX_PORT="$MYSQL_SOCKET" slurmdbd  # finds slurmdbd.conf next to $SLURM_CONF
  wait_for 30 slurmdbd sacctmgr -n show cluster
  sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

start_slurmctld() {
  alive_pid slurmctld >/dev/null && return 0
  slurmctld -i -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
  alive_pid slurmd >/dev/null && return 0
  slurmd -f "$SLURM_CONF"
  wait_for 10 slurmd alive_pid slurmd
}

node_idle() { sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

up() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "the one-node cluster runs its daemons as root; run as root"
  mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state" "$DIR/spool"
  chmod 755 "$DIR" "$RUN"  # munged refuses a world-writable socket directory
  install_packages
  write_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurmctld
  start_slurmd
  if ! node_idle; then  # a node left down by an earlier run returns with ReturnToService=2; nudge it
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  fi
  wait_for 30 "node $NODE (idle)" node_idle
  printf 'export SLURM_CONF=%s\n' "$SLURM_CONF" >"$DIR/env.sh"
  log "up in $((SECONDS - t0))s: cluster $CLUSTER, node $NODE, partition debug; state in $DIR"
  log "use it with: export SLURM_CONF=$SLURM_CONF   (or: eval \"\$(slurm/cluster.sh env)\")"
}

stop_daemon() {
  local name="$1" pid i
  pid="$(alive_pid "$name")" || { rm -f "$(pidfile "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do  # up to 15 s; a zombie counts as stopped
    alive_pid "$name" >/dev/null || break
    sleep 0.1
  done
  if pid="$(alive_pid "$name")"; then
    log "$name ($pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pidfile "$name")"
  log "stopped $name"
}

down() {
  local i n
  if alive_pid slurmctld >/dev/null; then  # cancel this cluster's jobs, so no job step outlives slurmd
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      n="$(squeue -h -t running,completing -o %i 2>/dev/null | wc -l)" || break
      [ "$n" = 0 ] && break
      sleep 0.1
    done
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[$i]}"
  done
}

status() {
  local d pid rc=0
  for d in "${DAEMONS[@]}"; do
    if pid="$(alive_pid "$d")"; then printf '%-10s running (pid %s)\n' "$d" "$pid"
    else printf '%-10s stopped\n' "$d"; rc=3; fi
  done
  [ "$rc" = 0 ] && sinfo
  return "$rc"
}

case "${1:-}" in
  install) install_packages ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) printf 'export SLURM_CONF=%s\n' "$SLURM_CONF" ;;
  *) echo "usage: $0 install|up|down|status|env   (state in \$HARNESS_SLURM_DIR, default /tmp/harness-slurm)" >&2; exit 2 ;;
esac
