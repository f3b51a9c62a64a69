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
#
# Needs Python 3.11+ (3.12+ for jax 0.11 and later); stock TPU VM images with an older
# python3 need another one first, e.g. `PYTHON=python3.12 bash tpu_setup.sh`.
# Installs the extras the *_paper configs use: tfds (TFDS sources) and tensorboard.
set -euo pipefail

cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "tpu_setup.sh: l2d_jax needs Python 3.11+, and $PYTHON is $("$PYTHON" -V 2>&1);" \
       "install one and run PYTHON=python3.12 bash tpu_setup.sh" >&2
  exit 2
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install "jax[tpu]"
"$VENV/bin/pip" install -e '.[tfds,tensorboard]'

"$VENV/bin/python" - <<'PY'
import jax
print("process", jax.process_index(), "of", jax.process_count())
print("local devices:", jax.local_devices())
print("all devices:", jax.devices())
PY
