#!/usr/bin/env bash
# A real one-node Slurm cluster with accounting, on this machine, for CI and for developers.
#
#   bash .ci/slurm-cluster.sh up       # install what is missing, start everything, wait until usable
#   bash .ci/slurm-cluster.sh status   # daemons, sinfo, squeue; exit 0 if healthy, 1 if not
#   bash .ci/slurm-cluster.sh down     # cancel jobs, stop every daemon this script started
#   bash .ci/slurm-cluster.sh reset    # down, wipe the state directory, up (job ids restart at 1)
#   bash .ci/slurm-cluster.sh stop-ctld | start-ctld   # slurmctld alone (the controller-restart test)
#
# SLURM_SHAPE=speed (or `up --speed`): a cluster shaped like Concordia's Speed instead of the plain
# one: partitions ps (CPU, default), pg (typed GPUs p6 and v100, node features gpu16 and gpu32),
# pt (a100; preemption there CANCELS the job) and urgent (higher PriorityTier: preempts the
# others; in ps and pg preemption REQUEUES), a QOS cap of 4 GPUs per user
# (MaxTRESPerUser=gres/gpu=4, enforced), and tcsh installed (Speed's default login shell). One
# node serves every partition (one slurmd per machine): the partitions differ in what a job asks,
# not in hardware. The shape in force is in $D/etc/shape; `up` in another shape wipes the job
# state (job ids restart at 1) since partitions the saved jobs name may no longer exist.
#
# Everything (config, state, spool, logs, pids, the MariaDB datadir and socket) lives under
# ${SLURM_LOCAL_DIR:-/tmp/al-slurm}; outside it only the munge socket (/run/munge, see below),
# the packages and /etc/slurm/slurm.conf, a symlink to the config in that directory, so
# plain sbatch/squeue/sacct/scontrol work from any shell: submitit runs them as subprocesses and
# does not pass SLURM_CONF along.
#
# Why things are the way they are is in shared/design/LOCAL-SLURM.md; the short version is in
# the comments below. Needs root, Debian 12 (Slurm 22.05), no systemd required.
set -euo pipefail

D=$(realpath -m "${SLURM_LOCAL_DIR:-/tmp/al-slurm}")
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-60}   # seconds allowed for each wait
CLUSTER=al_local                        # lower case and no '-': it becomes part of SQL table names
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819
SHAPE=${SLURM_SHAPE:-plain}
[[ ${2:-} == --speed ]] && SHAPE=speed
[[ $SHAPE == plain || $SHAPE == speed ]] || { echo "slurm-cluster: SLURM_SHAPE: expected plain or speed, got '$SHAPE'" >&2; exit 2; }
SPEED_GPU_CAP=4   # the QOS's GPUs per user at once (Speed gives a new user 4)
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server mariadb-client)
[[ $SHAPE == speed ]] && PACKAGES+=(tcsh)
# Start order; down stops them in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
# The one thing outside $D: Slurm 22.05 honours AuthInfo=socket= for most traffic but not for
# slurmctld's persistent connection to slurmdbd, which always uses the default socket
# ("Munge encode failed: Failed to access /run/munge/munge.socket.2", then slurmctld dies with
# "we have no TRES from it"). So munged listens where everyone looks by default.
MUNGE_SOCKET=/run/munge/munge.socket.2
MYSQL_SOCKET=$D/run/mysql/mysqld.sock
MARKER="AL_SLURM_DIR=$D"   # put in every daemon's environment: how we recognise ours later

# ---------------------------------------------------------------------------------------------
# output helpers

now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }   # locale may print ',' in EPOCHREALTIME
fmt_since() {
  local us=$(( $(now_us) - $1 ))
  printf '%d.%d s' $((us / 1000000)) $(((us / 100000) % 10))
}
log() { echo "slurm-cluster: $*"; }
warn() { echo "slurm-cluster: $*" >&2; }

# Tail of each log that exists and is not empty, indented, on stderr.
show_logs() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    warn "--- last lines of $f"
    tail -n 25 "$f" | sed 's/^/slurm-cluster:   | /' >&2
  done
}

die() { warn "ERROR: $*"; exit 1; }

logs_of() {   # the log files worth showing when daemon $1 misbehaves
  case $1 in
    munged) echo "$D/log/munged.out $D/log/munge/munged.log" ;;
    mariadbd) echo "$D/log/mariadbd.out $D/log/mysql/mariadb.err $D/log/mariadb-install-db.log" ;;
    slurmdbd) echo "$D/log/slurmdbd.out $D/log/slurmdbd.log" ;;
    slurmctld) echo "$D/log/slurmctld.out $D/log/slurmctld.log" ;;
    slurmd) echo "$D/log/slurmd.out $D/log/slurmd.log" ;;
  esac
}

die_daemon() {   # die_daemon NAME MESSAGE: fail with that daemon's logs
  local name=$1; shift
  # shellcheck disable=SC2046
  show_logs $(logs_of "$name")
  die "$*"
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping: a PID file per daemon, written by us (the daemons' own pid files are
# written later and some not at all in the foreground), and an environment marker so that a
# stale PID that the kernel reused for something else is never taken for ours.

pidfile() { echo "$D/run/pids/$1"; }

is_ours() {   # is_ours PID: alive and started by this script for this directory
  local pid=$1
  [[ -n $pid && -r /proc/$pid/environ ]] || return 1
  { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "$MARKER"
}

daemon_pid() {   # prints the PID of our running daemon NAME, or fails
  local f pid
  f=$(pidfile "$1")
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  is_ours "$pid" || return 1
  echo "$pid"
}

alive() { daemon_pid "$1" >/dev/null; }

# Start NAME in the background, in its own session (no systemd here to own it), with stdio on
# files so that a caller capturing our output through a pipe is not kept waiting on a daemon.
# setsid does not fork when its caller is not a process group leader (true for a background job
# of a script), so $! is the daemon's own PID, even through setpriv.
start_daemon() {
  spawn "$@" || die_daemon "$1" "could not start $1: ${*:2}"
}

# spawn NAME CMD...: start_daemon's work; returns 1 (instead of failing) if NAME is gone before
# it shows our marker.
spawn() {
  local name=$1; shift
  if alive "$name"; then return 0; fi
  (
    # Close inherited descriptors above stderr (a CI runner's pipes, for instance).
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-"
    done 2>/dev/null
    export AL_SLURM_DIR=$D SLURM_CONF=$D/etc/slurm.conf
    exec setsid "$@" </dev/null >>"$D/log/$name.out" 2>&1
  ) &
  local pid=$! i
  echo "$pid" >"$(pidfile "$name")"
  # /proc/PID/environ shows the marker only once the exec has happened; until then the
  # daemon would look dead to alive().
  for ((i = 0; i < 100; i++)); do
    is_ours "$pid" && return 0
    gone "$pid" && return 1
    sleep 0.05
  done
  return 1
}

# Exited, or a zombie: the daemons outlive this script and are reparented to PID 1, which here
# is not an init that reaps promptly (about 2 s per process).
gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat:0:1} == Z ]]
}

any_exists() {
  local p
  for p in "$@"; do [[ -e /proc/$p ]] && return 0; done
  return 1
}

# Stop by recorded PID: SIGTERM, then SIGKILL after a bounded wait.
stop_pid() {
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    gone "$pid" && return 0
    sleep 0.1
  done
  warn "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
}

stop_daemon() {
  local name=$1 pid
  if pid=$(daemon_pid "$name"); then
    stop_pid "$name" "$pid"
  fi
  rm -f "$(pidfile "$name")"
}

# Every process with our marker, whatever our PID files say (a lost PID file, a slurmstepd).
stray_pids() {
  local name pid
  for name in slurmd slurmstepd slurmctld slurmdbd mariadbd munged; do
    for pid in $(pgrep -x "$name" 2>/dev/null || true); do
      if is_ours "$pid"; then echo "$pid:$name"; fi
    done
  done
}

# ---------------------------------------------------------------------------------------------
# waiting

# wait_for DAEMON WHAT CMD...: run CMD until it succeeds; fail early if DAEMON died, and with
# its logs after $TIMEOUT seconds.
wait_for() {
  local daemon=$1 what=$2; shift 2
  await "$daemon" "$what" "$@" && return 0
  how_it_ended "$daemon"
  die_daemon "$daemon" "$daemon $ENDED while waiting for $what"
}

# await DAEMON WHAT CMD...: like wait_for, but returns 1 (instead of failing) if DAEMON died.
await() {
  local daemon=$1 what=$2; shift 2
  local deadline=$(($(now_us) + TIMEOUT * 1000000))
  until "$@" >/dev/null 2>&1; do
    alive "$daemon" || return 1
    if (($(now_us) > deadline)); then die_daemon "$daemon" "timed out after ${TIMEOUT}s waiting for $what"; fi
    sleep 0.2
  done
}

# how_it_ended NAME: sets ENDED to how our daemon NAME ended. Not in $(...): only this shell,
# which started the daemon, can collect its exit status.
ENDED=exited
how_it_ended() {
  local pid rc=0
  ENDED=exited
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 0
  if ! gone "$pid"; then   # wait would block on it
    ENDED="(pid $pid) is running but no longer shows our marker in /proc/$pid/environ"
    return 0
  fi
  wait "$pid" 2>/dev/null || rc=$?
  if ((rc == 127)); then
    ENDED=exited   # not our child: started by an earlier run of this script
  elif ((rc > 128)); then
    ENDED="was killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
  else
    ENDED="exited with status $rc"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {   # first port from $1 upwards that nothing listens on
  local p
  for ((p = $1; p < $1 + 200; p++)); do
    if ! port_open "$p"; then echo "$p"; return 0; fi
  done
  die "no free TCP port in $1..$(($1 + 199)) for mariadb"
}

# ---------------------------------------------------------------------------------------------
# packages

POLICY_RC=/usr/sbin/policy-rc.d
ADDED_POLICY=0
cleanup() { if ((ADDED_POLICY)); then rm -f "$POLICY_RC"; fi; }
trap cleanup EXIT

ensure_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local t
  t=$(now_us)
  log "installing ${missing[*]} (apt, log in $D/log/apt.log)"
  # Package scripts would try to start the daemons with the distribution's config (and with
  # init scripts, no systemd): some machines forbid that with a policy-rc.d, some do not. Forbid
  # it for the duration; we start our own daemons below.
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    ADDED_POLICY=1
  fi
  {
    export DEBIAN_FRONTEND=noninteractive
    dpkg --configure -a   # an earlier interrupted install would make apt-get refuse
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >>"$D/log/apt.log" 2>&1 || { show_logs "$D/log/apt.log"; die "apt-get failed"; }
  cleanup
  ADDED_POLICY=0
  log "packages installed in $(fmt_since "$t")"
}

# ---------------------------------------------------------------------------------------------
# directories, keys, config

make_dirs() {
  mkdir -p "$D"/{etc,state,spool,dev,run/pids,log,mysql/tmp}
  touch "$D/.al-slurm-cluster"   # lets `reset` check that it wipes a directory of ours
  # munged insists that its socket, pid, log and seed live in directories it owns and nobody
  # else can write; mariadbd runs as mysql and dies quietly when it cannot write its own files.
  mkdir -p "$D"/run/munge "$D"/log/munge "$D"/run/mysql "$D"/log/mysql "$D"/mysql/data /run/munge
  chmod 755 "$D" "$D"/run "$D"/log
  chown munge:munge "$D"/run/munge "$D"/log/munge /run/munge
  chmod 700 "$D"/log/munge
  chmod 755 "$D"/run/munge /run/munge   # clients (any user) connect to the socket
  chown -R mysql:mysql "$D"/mysql "$D"/run/mysql "$D"/log/mysql
  if ! setpriv --reuid=mysql --regid=mysql --clear-groups test -w "$D/mysql/data"; then
    die "user mysql cannot reach $D/mysql/data: every directory above $D must be world-searchable"
  fi
  # A GPU that Slurm can count: gres needs File= to be a character device or the node goes
  # INVAL. This one is /dev/null's major/minor; jobs never open it.
  local i
  for i in 0 1 2 3 4 5 6 7; do
    [[ -c $D/dev/gpu$i ]] || mknod "$D/dev/gpu$i" c 1 3 2>/dev/null || ln -sf /dev/null "$D/dev/gpu$i"
  done
}

ensure_munge_key() {
  local key=/etc/munge/munge.key
  if [[ ! -s $key ]]; then
    log "creating $key"
    mungekey --create --keyfile="$key" 2>/dev/null ||
      dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
  fi
  chown munge:munge "$key"
  chmod 400 "$key"
}

# write_if_changed FILE MODE: content on stdin; sets CONFIG_CHANGED=1 when FILE changed.
CONFIG_CHANGED=0
write_if_changed() {
  local f=$1 mode=$2 tmp
  tmp=$(mktemp "$f.XXXXXX")
  chmod "$mode" "$tmp"
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$f"
    CONFIG_CHANGED=1
  fi
}

# The node and partition lines of slurm.conf, by shape: node_and_partitions HW_LINE NODE REALMEM
node_and_partitions() {
  local hw=$1 node=$2 realmem=$3
  if [[ $SHAPE == plain ]]; then
    cat <<EOF
SlurmctldParameters=preempt_send_user_signal
$hw NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=10 OverSubscribe=YES
PartitionName=urgent Nodes=$node Default=NO MaxTime=INFINITE State=UP PriorityTier=10 GraceTime=10 OverSubscribe=NO
EOF
    return 0
  fi
  # Speed's shape on one node. config_overrides: the node is taken to have the CPUs written here
  # (16; a Speed node has dozens), so that six one-core GPU jobs can be placed at once and the
  # per-user GPU cap, not the cores, is what makes the fifth wait. Typed GPUs as on Speed's pg
  # (Tesla P6 16 GB: feature gpu16; V100 32 GB: gpu32) and pt (A100). The QOS's MaxTRESPerUser,
  # set once slurmdbd is up, holds only where limits are enforced. urgent's own PreemptMode must not
  # be OFF: with OFF there its jobs were seen never to preempt (Slurm 22.05); as the top tier,
  # nothing preempts them anyway. No preempt_send_user_signal: a preempted job gets SIGTERM only
  # (what LOCAL-SLURM.md's table expects where a cluster does not say otherwise); with it, submitit's
  # USR2 handler requeues the job itself, and pt's CANCEL would never be seen.
  cat <<EOF
SlurmdParameters=config_overrides
AccountingStorageEnforce=associations,limits,qos
NodeName=$node NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=$realmem Gres=gpu:p6:4,gpu:v100:2,gpu:a100:2 Feature=gpu16,gpu32 State=UNKNOWN
PartitionName=ps Nodes=$node Default=YES MaxTime=7-00:00:00 State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=pg Nodes=$node Default=NO MaxTime=7-00:00:00 State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=pt Nodes=$node Default=NO MaxTime=7-00:00:00 State=UP PriorityTier=1 PreemptMode=CANCEL GraceTime=10
PartitionName=urgent Nodes=$node Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=REQUEUE GraceTime=10
EOF
}

gres_conf() {
  echo "AutoDetect=off"
  if [[ $SHAPE == plain ]]; then
    echo "Name=gpu File=$D/dev/gpu0"
  else
    echo "Name=gpu Type=p6 File=$D/dev/gpu[0-3]"
    echo "Name=gpu Type=v100 File=$D/dev/gpu[4-5]"
    echo "Name=gpu Type=a100 File=$D/dev/gpu[6-7]"
  fi
}

# The QOS cap of the speed shape (none in the plain one: the database outlives a change of shape).
set_gpu_cap() {
  local cap=-1 want=""
  [[ $SHAPE == speed ]] && cap=$SPEED_GPU_CAP want=gres/gpu=$SPEED_GPU_CAP
  # exits 1 with "Nothing modified" when the value is already in force: check the value instead
  sacctmgr -i modify qos where name=normal set MaxTRESPerUser=gres/gpu=$cap >/dev/null 2>&1 || true
  [[ $(sacctmgr -n -P show qos normal format=MaxTRESPU 2>/dev/null) == "$want" ]] ||
    die "sacctmgr could not set the QOS normal's MaxTRESPerUser to '${want:-none}'"
}

partitions_text() {
  if [[ $SHAPE == plain ]]; then
    echo "partitions debug (default) and urgent (-p urgent preempts debug)"
  else
    echo "speed shape: partitions ps (default), pg, pt (preemption cancels), urgent (preempts); at most $SPEED_GPU_CAP GPUs per user"
  fi
}

# A change of shape: the saved jobs may name partitions that no longer exist; stop the Slurm
# daemons and forget the jobs. sacct keeps their records, so job ids must not start at 1 again (a
# test asking sacct about a new job would read an old one of the same id): the new state starts
# after the largest id slurmctld handed out or accounting knows (FirstJobId, $D/etc/first_job_id;
# raise_first_job_id, once the database is up).
STATE_WIPED=0
change_shape() {
  local was
  was=$(cat "$D/etc/shape" 2>/dev/null || echo plain)
  [[ $was == "$SHAPE" ]] && return 0
  if [[ -d $D/state ]]; then
    log "shape $was -> $SHAPE: stopping slurmd and slurmctld, wiping the job state in $D/state"
    local next=0
    if alive slurmctld && ctld_answers; then
      # shellcheck disable=SC2046
      scancel $(squeue -h -o %A 2>/dev/null | sort -u) 2>/dev/null || true
      next=$(scontrol show config 2>/dev/null | awk '$1 == "NEXT_JOB_ID" {print $3}' | grep -E '^[0-9]+$' || echo 0)
    fi
    if ((next > $(cat "$D/etc/first_job_id" 2>/dev/null || echo 1))); then echo "$next" >"$D/etc/first_job_id"; fi
    STATE_WIPED=1
    stop_daemon slurmd
    stop_daemon slurmctld
    rm -rf "$D/state" "$D/spool"
    mkdir -p "$D/state" "$D/spool"
  fi
  echo "$SHAPE" >"$D/etc/shape"
}

write_config() {
  # The node line exactly as slurmd sees the hardware: CPUs alone makes slurmd report a
  # socket/core mismatch and the node is refused.
  local hw node cpus realmem defmem
  hw=$(slurmd -C 2>/dev/null | head -n 1)
  [[ $hw == NodeName=* ]] || die "slurmd -C printed no node line: $(slurmd -C 2>&1 | head -n 3)"
  node=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$hw")
  cpus=$(sed -nE 's/.* CPUs=([0-9]+).*/\1/p' <<<"$hw")
  realmem=$(sed -nE 's/.* RealMemory=([0-9]+).*/\1/p' <<<"$hw")
  # Memory is a consumable resource (as on real clusters, so --mem matters); a job that names
  # no --mem must not take the whole node, so give it a modest per-CPU default.
  defmem=$((realmem / cpus < 1024 ? realmem / cpus : 1024))
  NODE=$node
  echo "$node" >"$D/etc/nodename"

  # mariadb: keep the port across runs while it is free, so slurmdbd.conf does not change.
  local port=""
  [[ -s $D/etc/mariadb.port ]] && port=$(<"$D/etc/mariadb.port")
  if [[ -z $port ]] || { ! alive mariadbd && port_open "$port"; }; then
    port=$(free_port 33061)
  fi
  echo "$port" >"$D/etc/mariadb.port"
  MYSQL_PORT=$port
  if [[ ! -s $D/etc/dbpass ]]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$D/etc/dbpass")
  fi
  DB_PASS=$(<"$D/etc/dbpass")

  write_if_changed "$D/etc/slurm.conf" 644 <<EOF
# Generated by .ci/slurm-cluster.sh; rewritten by every 'up'. Edit the script, not this file.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root

AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long (plus a scheduling pass) before it may start
# again; the default is 120 s. Read only when slurmctld starts.
AuthInfo=cred_expire=10

StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups here: track job processes by parentage, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# Sample every 2 s: at the default 30 s a step shorter than that records no MaxRSS in sacct.
JobAcctGatherFrequency=task=2
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
GresTypes=gpu

# Fast turnaround for tests: schedule every few seconds, forget finished jobs soon (sacct
# still has them), let a node that was down come back as soon as it registers.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=2
MinJobAge=30
ReturnToService=2
InactiveLimit=0
KillWait=10
JobRequeue=1
# AL_SLURM_MAX_ARRAY_SIZE: CI starts the cluster with a small one, so that sweeps are split into arrays
MaxArraySize=${AL_SLURM_MAX_ARRAY_SIZE:-10001}
MaxJobCount=20000
FirstJobId=$(cat "$D/etc/first_job_id" 2>/dev/null || echo 1)

# Preemption as the tests need it: a job in 'urgent' (higher PriorityTier) takes the node from
# jobs in 'debug', which are requeued after GraceTime. preempt_send_user_signal (plain shape only,
# below) sends the job's --signal (submitit: USR2) at the start of the grace time, which is what
# reaches checkpoint().
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none

$(node_and_partitions "$hw" "$node" "$realmem")
EOF

  write_if_changed "$D/etc/gres.conf" 644 < <(gres_conf)

  # Holds the database password: slurmdbd refuses a slurmdbd.conf readable by others.
  write_if_changed "$D/etc/slurmdbd.conf" 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

  # Commands started without SLURM_CONF (submitit's sbatch/sacct/scancel) read /etc/slurm.
  mkdir -p /etc/slurm
  if [[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
    warn "moving the existing /etc/slurm/slurm.conf aside to /etc/slurm/slurm.conf.before-al-slurm"
    mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.before-al-slurm
  fi
  if [[ $(readlink /etc/slurm/slurm.conf 2>/dev/null) != "$D/etc/slurm.conf" ]]; then
    ln -sfn "$D/etc/slurm.conf" /etc/slurm/slurm.conf
  fi
}

# ---------------------------------------------------------------------------------------------
# the daemons

munge_answers() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munged() {
  # A developer machine may already run munged as a service on the default socket; ours could
  # not bind there, and theirs serves Slurm just as well (same /etc/munge/munge.key).
  if ! alive munged && munge_answers; then
    log "using the munged already running on $MUNGE_SOCKET (not ours; down leaves it alone)"
    return 0
  fi
  # As user munge: munged refuses to run as root with a key owned by munge, and vice versa.
  # Once, on a CI machine just handed over (every process of the previous user ended), a fresh
  # munged vanished right after start with nothing in its log: start it up to three times, and
  # say how each one ended.
  local try
  for try in 1 2 3; do
    spawn munged setpriv --reuid=munge --regid=munge --init-groups \
      munged --foreground --num-threads=10 --socket="$MUNGE_SOCKET" --pid-file="$D/run/munge/munged.pid" \
      --log-file="$D/log/munge/munged.log" --seed-file="$D/run/munge/munged.seed" &&
      await munged "munged to answer" munge_answers && return 0
    how_it_ended munged
    warn "munged $ENDED before it answered (try $try of 3)"
    rm -f "$(pidfile munged)"
    sleep 1
  done
  die_daemon munged "munged did not stay up in three tries"
}

# After the job state was wiped: job ids start after the largest one accounting knows. Asked of the
# database itself, not sacct: after a reboot slurmdbd is down when the state is wiped, and the
# database on disk keeps every old job. Rewrites slurm.conf (slurmctld is not running yet).
raise_first_job_id() {
  local last next
  next=$(cat "$D/etc/first_job_id" 2>/dev/null || echo 1)
  last=$(mysql_root -N -B -e "SELECT MAX(id_job) FROM slurm_acct_db.${CLUSTER}_job_table" 2>/dev/null |
    grep -E '^[0-9]+$' || echo 0)
  if ((last + 1 > next)); then next=$((last + 1)); fi
  echo "$next" >"$D/etc/first_job_id"
  write_config
  log "job ids start at $next (the largest accounting keeps: $last)"
}

# shellcheck disable=SC2120
mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot "$@"; }

start_mariadb() {
  if [[ ! -d $D/mysql/data/mysql ]]; then
    local t
    t=$(now_us)
    mariadb-install-db --no-defaults --user=mysql --datadir="$D/mysql/data" \
      --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
      >"$D/log/mariadb-install-db.log" 2>&1 ||
      { show_logs "$D/log/mariadb-install-db.log"; die "mariadb-install-db failed"; }
    log "mariadb datadir created in $(fmt_since "$t")"
  fi
  # A throwaway database: no durability, no binary log, TCP on 127.0.0.1 only.
  start_daemon mariadbd mariadbd --no-defaults --user=mysql \
    --datadir="$D/mysql/data" --tmpdir="$D/mysql/tmp" \
    --socket="$MYSQL_SOCKET" --pid-file="$D/run/mysql/mysqld.pid" \
    --log-error="$D/log/mysql/mariadb.err" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
    --innodb-flush-log-at-trx-commit=0 --innodb-lock-wait-timeout=900 --innodb-log-file-size=64M
  wait_for mariadbd "mariadb to accept connections" mysql_root -e 'SELECT 1'
  # Idempotent; also re-applies the password should dbpass have been regenerated.
  # SQL on stdin, not in -e: the password must not show up in the process list.
  # shellcheck disable=SC2119
  mysql_root <<SQL || die_daemon mariadbd "could not create the accounting database and user"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

check_port_free() {   # a daemon of someone else's on our port would fail in confusing ways
  local name=$1 port=$2
  if ! alive "$name" && port_open "$port"; then
    die "port $port, needed by $name, is already in use by another process: $(ss -ltnp "sport = :$port" 2>/dev/null | tail -n +2 | head -n 1)"
  fi
}

node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1; }
node_usable() { [[ $(node_state) =~ ^(idle|mix|mixed|alloc|allocated|comp|completing)$ ]]; }
sacct_answers() { sacct -n -X -S now -o JobID >/dev/null 2>&1; }
ctld_answers() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# slurmctld restores the node as 'idle' from its state files before slurmd has said a word, so
# 'idle' alone proves nothing after a restart: also wait for a registration from the slurmd
# started at or after $1 (epoch seconds; 0 when slurmd was already running).
slurmd_registered_since() {
  local t
  t=$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [[ -n $t && $t != None ]] && (($(date -d "$t" +%s) >= $1))
}

# The node can be left DRAIN/DOWN/INVAL by an earlier bad config or an unclean stop; that
# survives restarts until someone resumes it.
wait_node_idle() {
  local since=$1 deadline=$(($(now_us) + TIMEOUT * 1000000)) resumed=0 st
  until node_usable && slurmd_registered_since "$since"; do
    alive slurmd || die_daemon slurmd "slurmd exited before the node became idle"
    alive slurmctld || die_daemon slurmctld "slurmctld exited before the node became idle"
    st=$(node_state)
    if ((!resumed)) && [[ $st =~ ^(drain|drained|drng|down|inval)$ ]]; then
      log "node $NODE is '$st'; resuming it"
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    if (($(now_us) > deadline)); then
      sinfo -R >&2 || true
      show_logs "$D/log/slurmctld.log"
      die_daemon slurmd "timed out after ${TIMEOUT}s waiting for node $NODE to be idle (state: '${st:-?}')"
    fi
    sleep 0.2
  done
}

all_alive() {
  local n
  for n in "${DAEMONS[@]}"; do
    alive "$n" || { [[ $n == munged ]] && munge_answers; } || return 1
  done
}

healthy() {
  all_alive && ctld_answers && node_usable && sacct_answers
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
  local t0 t
  t0=$(now_us)
  [[ $EUID -eq 0 ]] || die "needs root (it installs packages and starts system daemons)"
  mkdir -p "$D/log"
  ensure_packages
  make_dirs
  ensure_munge_key
  change_shape
  write_config

  if ((!CONFIG_CHANGED)) && healthy; then
    set_gpu_cap
    log "already up and healthy: node $NODE, $(partitions_text), dir $D ($(fmt_since "$t0"))"
    return 0
  fi
  if ((CONFIG_CHANGED)); then
    # Every Slurm daemon reads its config only at start; a restart keeps the jobs (state dir).
    local n restarted=()
    for n in slurmd slurmctld slurmdbd; do
      if alive "$n"; then stop_daemon "$n"; restarted+=("$n"); fi
    done
    ((${#restarted[@]} == 0)) || log "config changed: restarting ${restarted[*]}"
  fi

  t=$(now_us); start_munged; log "munged ready ($(fmt_since "$t"))"
  t=$(now_us); start_mariadb; log "mariadb ready on 127.0.0.1:$MYSQL_PORT ($(fmt_since "$t"))"
  ((!STATE_WIPED)) || raise_first_job_id

  # slurmdbd creates its tables on first contact, then listens; slurmctld registers the cluster
  # there itself, so no sacctmgr step is needed.
  t=$(now_us)
  check_port_free slurmdbd "$DBD_PORT"
  start_daemon slurmdbd slurmdbd -D
  wait_for slurmdbd "slurmdbd to listen on $DBD_PORT" port_open "$DBD_PORT"
  log "slurmdbd ready ($(fmt_since "$t"))"

  t=$(now_us)
  check_port_free slurmctld "$CTLD_PORT"
  start_daemon slurmctld slurmctld -D -f "$D/etc/slurm.conf"
  wait_for slurmctld "slurmctld to answer" ctld_answers
  log "slurmctld ready ($(fmt_since "$t"))"

  t=$(now_us)
  check_port_free slurmd "$SLURMD_PORT"
  local slurmd_since=0
  alive slurmd || slurmd_since=$(date +%s)
  start_daemon slurmd slurmd -D -f "$D/etc/slurm.conf"
  wait_node_idle "$slurmd_since"
  log "slurmd ready, node $NODE $(node_state) ($(fmt_since "$t"))"

  wait_for slurmdbd "sacct to answer" sacct_answers
  set_gpu_cap
  log "up: node $NODE, $(partitions_text), dir $D, total $(fmt_since "$t0")"
}

cmd_down() {
  local t0 t n pid ids i left stopped=()
  t0=$(now_us)
  [[ $EUID -eq 0 ]] || die "needs root"
  if [[ ! -d $D/run/pids ]] && [[ -z $(stray_pids) ]]; then
    log "nothing to stop in $D"
    return 0
  fi
  NODE=$(cat "$D/etc/nodename" 2>/dev/null || true)
  # Running jobs are processes under slurmstepd: cancel them while slurmctld can still do it
  # cleanly, or they would outlive the daemons.
  if alive slurmctld && ctld_answers; then
    ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${ids// /} ]]; then
      log "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      # Bounded by KillWait (10 s) plus slack: SIGTERM, then SIGKILL, then the epilog.
      for ((i = 0; i < 300; i++)); do
        [[ -z $(squeue -h -o %A 2>/dev/null | head -n 1) ]] && break
        sleep 0.1
      done
    fi
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    n=${DAEMONS[i]}
    if pid=$(daemon_pid "$n"); then
      t=$(now_us)
      stopped+=("$pid")
      stop_pid "$n" "$pid"
      log "stopped $n ($(fmt_since "$t"))"
    fi
    rm -f "$(pidfile "$n")"
  done
  # Anything of ours the PID files did not cover (lost PID file, a slurmstepd of a job).
  for left in $(stray_pids); do
    warn "stopping leftover ${left#*:} (pid ${left%%:*})"
    stopped+=("${left%%:*}")
    stop_pid "${left#*:}" "${left%%:*}"
  done
  left=$(stray_pids)
  [[ -z $left ]] || die "processes still running after down: $left"
  # Let PID 1 reap the zombies (it takes ~2 s here), so that `pgrep slurm` right after `down`
  # shows nothing.
  for ((i = 0; i < 100; i++)); do
    any_exists "${stopped[@]}" || break
    sleep 0.1
  done
  log "down ($(fmt_since "$t0"))"
}

cmd_status() {
  local n pid
  NODE=$(cat "$D/etc/nodename" 2>/dev/null || echo '?')
  for n in "${DAEMONS[@]}"; do
    if pid=$(daemon_pid "$n"); then
      log "$n running (pid $pid)"
    elif [[ $n == munged ]] && munge_answers; then
      log "munged: not ours, but answering on $MUNGE_SOCKET"
    else
      log "$n NOT running"
    fi
  done
  if alive slurmctld && ctld_answers; then
    sinfo -o '%P %a %l %D %t %N %G' 2>&1 | sed 's/^/slurm-cluster:   /'
    squeue -o '%.8i %.9P %.20j %.8u %.2t %.10M %R' 2>&1 | sed 's/^/slurm-cluster:   /'
  fi
  if healthy; then
    log "healthy"
  else
    log "NOT healthy"
    return 1
  fi
}

cmd_reset() {
  cmd_down
  if [[ -e $D ]]; then
    # Refuse to wipe a directory this script did not create (SLURM_LOCAL_DIR set by mistake).
    [[ -f $D/.al-slurm-cluster && $D != / ]] || die "$D does not look like ours; not wiping it"
    rm -rf "$D"
    log "wiped $D"
  fi
  cmd_up
}

# A controller restart (maintenance): the fault tests stop slurmctld alone while jobs run, then
# start it again; slurmd, slurmdbd and the jobs' processes go on.
cmd_stop_ctld() {
  stop_daemon slurmctld
  log "slurmctld stopped"
}

cmd_start_ctld() {
  local t
  t=$(now_us)
  check_port_free slurmctld "$CTLD_PORT"
  start_daemon slurmctld slurmctld -D -f "$D/etc/slurm.conf"
  wait_for slurmctld "slurmctld to answer" ctld_answers
  log "slurmctld ready ($(fmt_since "$t"))"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  stop-ctld) cmd_stop_ctld ;;
  start-ctld) cmd_start_ctld ;;
  *)
    echo "usage: $0 up [--speed]|down|status|reset [--speed]|stop-ctld|start-ctld   (state in \${SLURM_LOCAL_DIR:-/tmp/al-slurm}; or SLURM_SHAPE=plain|speed)" >&2
    exit 2
    ;;
esac
