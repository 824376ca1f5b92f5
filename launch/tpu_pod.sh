#!/usr/bin/env bash
# One run on every worker of a Cloud TPU VM pod slice (e.g. v4-32: 4 workers x 4 chips).
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config configs/simclr_imagenet.py --workdir gs://BUCKET/simclr_imagenet
#
# Copies this checkout to ~/ssljax on all workers, installs it (jax[tpu]) and starts `python -m ssljax.train
# --multihost` on all of them; jax.distributed.initialize() finds the coordinator and process ids from the TPU
# metadata. The workdir is a GCS bucket (written through etils.epath and orbax, with the `gcs` extra) or a
# directory every worker sees (NFS, Filestore); the tfds data_dir too. A maintenance event's SIGTERM reaches JAX's preemption sync: all workers save the same step.
set -euo pipefail
tpu=$1
zone=$2
shift 2
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all "$(dirname "$0")/.." "$tpu":~/ssljax
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/ssljax && python3 -m venv .venv && .venv/bin/pip install -q -e '.[gcs]' 'jax[tpu]' && .venv/bin/python -m ssljax.train --multihost $args"
