#!/usr/bin/env bash
# N training processes on this host, joined by jax.distributed through 127.0.0.1 (a free port
# is chosen): how multi-host code is run and tested on one machine.
#
#   launch/multiprocess.sh N CONFIG WORKDIR [--devices_per_process=M] [--config.KEY=VALUE ...]
#
# Each process gets its own share of devices: M fake CPU devices (default 1) on a CPU-only
# machine, or M of the GPUs (CUDA_VISIBLE_DEVICES) when nvidia-smi finds N*M or more.
# Process 0 prints to the terminal; every process also logs to WORKDIR/logs/process_I.log.
# Ctrl-C / SIGTERM are forwarded to every process (they save a checkpoint and stop). When one
# process fails, the others are stopped too; the exit code is the first failure's (0 if none).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 3 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N CONFIG WORKDIR [--devices_per_process=M] [--config.KEY=VALUE ...]" >&2
  exit 2
fi
n=$1 config=$2 workdir=$3
shift 3
per=1
args=()
for arg in "$@"; do
  case $arg in
    --devices_per_process=*)
      per=${arg#*=}
      [[ $per =~ ^[1-9][0-9]*$ ]] || { echo "error: --devices_per_process: expected a positive integer" >&2; exit 2; } ;;
    *) args+=("$arg") ;;
  esac
done
# Paths as the caller meant them: WORKDIR, and CONFIG when it names a file from here (else it is
# taken from the repository, e.g. configs/demo.py), before the command runs in the repository.
[[ $workdir = /* ]] || workdir="$PWD/$workdir"
config_file=${config%%:*}
[[ $config_file != /* && -f $config_file ]] && config="$PWD/$config"
python=${PYTHON:-$([[ -x $here/.venv/bin/python ]] && echo "$here/.venv/bin/python" || echo python3)}
gpus=$( (nvidia-smi --list-gpus 2>/dev/null || true) | wc -l)
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$workdir/logs" || { echo "error: cannot create $workdir/logs" >&2; exit 2; }
cd "$here"

pids=()
for ((i = 0; i < n; i++)); do
  if ((gpus >= n * per)); then
    env_vars=(CUDA_VISIBLE_DEVICES="$(seq -s, $((i * per)) $((i * per + per - 1)))")
  else
    env_vars=(JAX_PLATFORMS=cpu XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$per")
  fi
  cmd=(env "${env_vars[@]}" "$python" -m sora_jax.main --config="$config" --workdir="$workdir"
       --config.distributed.coordinator_address="127.0.0.1:$port" --config.distributed.num_processes="$n"
       --config.distributed.process_id="$i" "${args[@]}")
  if ((i == 0)); then
    "${cmd[@]}" > >(tee "$workdir/logs/process_0.log") 2>&1 &
  else
    "${cmd[@]}" > "$workdir/logs/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

forward() {
  echo "launch: forwarding SIG$1 to ${#pids[@]} processes" >&2
  kill -s "$1" "${pids[@]}" 2>/dev/null
}
trap 'forward INT' INT
trap 'forward TERM' TERM

status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  wait -n -p done_pid "${running[@]}"
  code=$?
  [[ -z ${done_pid:-} ]] && continue  # interrupted by a trapped signal: keep waiting
  still=()
  for pid in "${running[@]}"; do [[ $pid != "$done_pid" ]] && still+=("$pid"); done
  running=("${still[@]}")
  for ((i = 0; i < n; i++)); do [[ ${pids[i]} == "$done_pid" ]] && index=$i; done
  if ((code != 0 && status == 0)); then
    status=$code
    echo "launch: process $index exited with code $code (log: $workdir/logs/process_$index.log); stopping the others" >&2
    kill -s TERM "${pids[@]}" 2>/dev/null
    # Processes waiting on the dead one in a collective cannot act on SIGTERM: kill them after a grace period.
    (sleep 20; kill -s KILL "${pids[@]}" 2>/dev/null) &
    killer=$!
  fi
  unset done_pid
done
[[ -n ${killer:-} ]] && kill "$killer" 2>/dev/null
exit $status
