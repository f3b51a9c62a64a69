#!/usr/bin/env bash
# Set up l2d_jax on a Cloud TPU VM (single host or every worker of a multi-host slice).
#
# Usage, on one TPU VM:
#   bash tpu_setup.sh
# On every worker of a multi-host slice (e.g. v5p-64), run the same command on all:
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
#     --command="git clone REPO l2d_jax && cd l2d_jax && bash tpu_setup.sh"
# then launch the same job on all workers with --distributed: it calls
# jax.distributed.initialize(), which picks up the TPU topology by itself, and each
# process feeds its own shard of every batch:
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
#     --command="cd l2d_jax && .venv/bin/l2d-jax run --distributed --config squad_v1_paper"
set -euo pipefail

cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install "jax[tpu]"
"$VENV/bin/pip" install -e '.[tfds]'

"$VENV/bin/python" - <<'PY'
import jax
print("process", jax.process_index(), "of", jax.process_count())
print("local devices:", jax.local_devices())
print("all devices:", jax.devices())
PY
