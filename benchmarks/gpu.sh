#!/usr/bin/env bash
# GPU benchmark of every registered model on one CUDA GPU (rezoo.bench.suite; settings from the environment):
#   a training step (forward + backward + AdamW) in bf16-mixed (autocast) and fp32 at 256 px, and inference
#   in bf16, fp32 and torch.compile (fp32, Inductor weight freezing) at 512 px, batch 8; GramSR at its released
#   size (SD-2.1-base + DINOv3 ViT-B/16 from its configs, random weights). Writes benchmarks/<model>_gpu.json
#   (a JSON list of rezoo bench records: img/s, peak memory, FLOPs per image and achieved TFLOP/s; a
#   configuration out of memory or failing is recorded with its error and the next runs). Exits 1 if any failed.
#
#   bash benchmarks/gpu.sh                                     # every model
#   MODELS="pip garnet" bash benchmarks/gpu.sh                 # some
#   MODES="bf16 eager" SECONDS_PER_MODEL=120 bash benchmarks/gpu.sh   # no compile; skip runs past 120 s a model
#   DEVICE=cpu SIZE=32 BATCH=2 WARMUP=0 REPEATS=1 MODELS=ste OUT=/tmp/b bash benchmarks/gpu.sh   # the logic, on a CPU
# Other settings: TRAIN_SIZE, FORWARD_SIZE, NET_KWARGS='{"pip": {"dim": 8}}', PYTHON (the interpreter).
# Works from a checkout without installing (PYTHONPATH), as on a lent GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python}" -c 'import sys; from rezoo.bench import suite_from_env; sys.exit(suite_from_env())'
