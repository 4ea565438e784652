#!/usr/bin/env bash
# GPU benchmark of every registered model, one CUDA GPU, within about 8 minutes on an H200:
#   training step (forward + backward + AdamW) in bf16-mixed (autocast) and fp32,
#   inference in bf16, fp32 and torch.compile (fp32, Inductor weight freezing; 256 px only, to bound
#   compile time), at 256 and 512 px, batch 8. Writes benchmarks/<model>_gpu.json (a JSON list of
#   rezoo bench records; a configuration that runs out of memory is recorded with its error).
#
#   bash benchmarks/gpu.sh                      # every model
#   MODELS="pip garnet" bash benchmarks/gpu.sh  # some
# Works from a checkout without installing (PYTHONPATH), as on a lent GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python - <<'PY'
import json, os, time
from pathlib import Path

import torch

import zoo
from rezoo.bench import main as bench

if not torch.cuda.is_available():
    raise SystemExit("benchmarks/gpu.sh needs a CUDA GPU")
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
runs = [("train", "bf16", 256), ("train", "eager", 256), ("forward", "bf16", 256), ("forward", "eager", 256), ("forward", "compile", 256),
        ("train", "bf16", 512), ("train", "eager", 512), ("forward", "bf16", 512), ("forward", "eager", 512)]
models = os.environ.get("MODELS", "").split() or zoo.list_models()
budget = float(os.environ.get("SECONDS_PER_MODEL", 90))  # skip the rest of a model's runs past this
for name in models:
    out, start = Path(f"benchmarks/{name}_gpu.json"), time.perf_counter()
    out.unlink(missing_ok=True)
    for task, mode, size in runs:
        if time.perf_counter() - start > budget:
            print(f"{name}: time budget spent, skipping {task}/{mode}/{size}")
            continue
        argv = ["--model", name, "--task", task, "--mode", mode, "--size", str(size), "--batch", "8", "--warmup", "3", "--repeats", "10", "--json", str(out)]
        try:
            bench(argv)
        except torch.cuda.OutOfMemoryError as error:
            records = json.loads(out.read_text()) if out.exists() else []
            records.append({"model": name, "task": task, "mode": mode, "size": size, "batch": 8, "error": f"out of memory: {str(error).splitlines()[0]}"})
            out.write_text(json.dumps(records, indent=1))
            print(f"{name} {task}/{mode}/{size}: out of memory")
        finally:
            torch.cuda.empty_cache()
    print(f"{name}: {time.perf_counter() - start:.0f} s -> {out}")
PY
