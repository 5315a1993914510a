#!/usr/bin/env bash
# The same training command on every worker of a Cloud TPU VM slice (v4/v5e/v5p/v6e pods);
# jax.distributed.initialize() finds the other workers through the TPU metadata.
#
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# Edit / set: PROJECT (gcloud's default project otherwise), REMOTE_DIR (where the code lives on
# the workers, default ~/sora_jax), SYNC=0 to skip copying this checkout there. WORKDIR must be
# storage that every worker sees (a Filestore or GCS FUSE mount). On first use, create the
# environment on every worker: SETUP=1 runs `make venv` there (pip installs jax[tpu] too).
# Healthy: worker 0's output shows "parameters: ..." and "step N/M: loss ..." lines; WORKDIR/metrics.jsonl grows.
# Ctrl-C stops the ssh sessions; stop the job itself with `... ssh --worker=all --command="pkill -TERM -f sora_jax.main"`.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
remote=${REMOTE_DIR:-sora_jax}
project=(${PROJECT:+--project="$PROJECT"})
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ssh_all=(gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" "${project[@]}" --worker=all)
if [[ ${SYNC:-1} == 1 ]]; then
  gcloud compute tpus tpu-vm scp --recurse --zone="$zone" "${project[@]}" --worker=all \
    "$here/sora_jax" "$here/configs" "$here/launch" "$here/Makefile" "$here/pyproject.toml" \
    "$here/requirements.lock" "$tpu:$remote/"
fi
if [[ ${SETUP:-0} == 1 ]]; then
  "${ssh_all[@]}" --command="cd $remote && make venv && .venv/bin/pip install -q 'jax[tpu]'"
fi
overrides=$(printf ' %q' "$@")
"${ssh_all[@]}" --command="cd $remote && .venv/bin/python -m sora_jax.main --config=$config --workdir=$workdir \
  --config.distributed.initialize=yes$overrides"
