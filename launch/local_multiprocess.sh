#!/usr/bin/env bash
# Run genret_jax.main as N cooperating JAX processes on this machine (jax.distributed over
# gloo on 127.0.0.1), each with D fake CPU devices. Used by the tests and to try multi-host
# behaviour (per-host input shards, process-0-only reports, shared checkpoints) on a laptop.
#
#   launch/local_multiprocess.sh [-n 2] [-d 2] [-p PORT] [--dry-run] -- --config=configs/joint.py --workdir=W
#
# Every process gets the same arguments plus --coordinator_address/--num_processes/--process_id.
# Logs: $LOG_DIR/process_<i>.log (default: a temp dir, printed). Exit status: non-zero if any
# process failed.
set -euo pipefail

num_processes=2
devices_per_process=2
port=""
dry_run=0
log_dir="${LOG_DIR:-}"
python="${PYTHON:-python3}"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) num_processes="$2"; shift 2 ;;
    -d) devices_per_process="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (main's own flags go after --)" >&2; exit 2 ;;
  esac
done

if ! [[ "$num_processes" =~ ^[1-9][0-9]*$ && "$devices_per_process" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: -n and -d must be positive integers" >&2
  exit 2
fi
if [[ -z "$port" ]]; then
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
cmds=()
for ((i = 0; i < num_processes; i++)); do
  cmds+=("XLA_FLAGS=--xla_force_host_platform_device_count=${devices_per_process} CUDA_VISIBLE_DEVICES= ${python} -m genret_jax.main --coordinator_address=127.0.0.1:${port} --num_processes=${num_processes} --process_id=${i} $* > ${log_dir:-LOG_DIR}/process_${i}.log 2>&1")
done

if [[ "$dry_run" == 1 ]]; then
  printf '%s\n' "${cmds[@]}"
  exit 0
fi
if [[ -z "$log_dir" ]]; then
  log_dir=$(mktemp -d "${TMPDIR:-/tmp}/genret_mp.XXXXXX")
fi
mkdir -p "$log_dir"

echo "logs: ${log_dir}"
pids=()
for ((i = 0; i < num_processes; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=${devices_per_process}" CUDA_VISIBLE_DEVICES="" \
    "$python" -m genret_jax.main --coordinator_address="127.0.0.1:${port}" \
    --num_processes="$num_processes" --process_id="$i" "$@" > "${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done

status=0
for ((i = 0; i < num_processes; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "process ${i} failed; last lines of ${log_dir}/process_${i}.log:" >&2
    tail -n 20 "${log_dir}/process_${i}.log" >&2
    status=1
  fi
done
cat "${log_dir}/process_0.log"
exit "$status"
