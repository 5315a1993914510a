#!/usr/bin/env bash
# One training process on all of this machine's devices.
#
#   launch/local.sh CONFIG WORKDIR [--fake_devices=N] [--config.KEY=VALUE ...]
#
# --fake_devices=N runs on N CPU devices (XLA's host-platform device count): sharded code without
# accelerators. Uses .venv/bin/python when present (make venv), else $PYTHON or python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--fake_devices=N] [--config.KEY=VALUE ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
args=()
for arg in "$@"; do
  case $arg in
    --fake_devices=*)
      n=${arg#*=}
      [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "error: --fake_devices: expected a positive integer, got '$n'" >&2; exit 2; }
      export JAX_PLATFORMS=cpu XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$n" ;;
    *) args+=("$arg") ;;
  esac
done
# Paths as the caller meant them: WORKDIR, and CONFIG when it names a file from here (else it is
# taken from the repository, e.g. configs/demo.py), before the command runs in the repository.
[[ $workdir = /* ]] || workdir="$PWD/$workdir"
config_file=${config%%:*}
[[ $config_file != /* && -f $config_file ]] && config="$PWD/$config"
python=${PYTHON:-$([[ -x $here/.venv/bin/python ]] && echo "$here/.venv/bin/python" || echo python3)}
cd "$here"
exec "$python" -m sora_jax.main --config="$config" --workdir="$workdir" "${args[@]}"
