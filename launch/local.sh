#!/usr/bin/env bash
# N processes of one run on this machine (jax.distributed over localhost; CPU collectives use gloo).
#
#   launch/local.sh 2 --config configs/simclr_digits.py --workdir workdirs/two_processes --cpu_devices=4
#
# Each process gets --coordinator_address/--num_processes/--process_id; Ctrl-C or SIGTERM is passed on to all of
# them as SIGTERM, so they save the same step together and exit 0 (re-run the same command to continue).
set -euo pipefail
num_processes=$1
shift
port=${SSLJAX_PORT:-$((20000 + RANDOM % 10000))}
python=${PYTHON:-python}
pids=()
for ((i = 0; i < num_processes; i++)); do
  "$python" -m ssljax.train "$@" --coordinator_address="127.0.0.1:$port" --num_processes="$num_processes" \
    --process_id="$i" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
