"""``rezoo bench``: inputs from ``zoo.model_info`` for every model, typed training outputs, and peak
memory measured per implementation when two are interleaved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rezoo.bench as bench_module
import zoo
from rezoo.bench import SUITE_RUNS
from rezoo.bench import main as bench
from tests.conftest import ROOT, TINY_NETS, run_tool
from tests.gramsr_fixtures import DINO, TINY_BASE
from zoo.errors import InputError


@pytest.mark.parametrize("name", zoo.list_models())
def test_bench_runs_every_model_forward_and_train(name, tmp_path):
    out = tmp_path / "bench.json"
    for task in ("forward", "train"):
        bench(
            [
                "--model",
                name,
                "--size",
                "32",
                "--batch",
                "2",
                "--task",
                task,
                "--warmup",
                "1",
                "--repeats",
                "1",
                "--set",
                *(f"{key}={json.dumps(value)}" for key, value in TINY_NETS[name].items()),
                "--json",
                str(out),
            ]
        )
    records = json.loads(out.read_text())
    assert [r["task"] for r in records] == ["forward", "train"]
    assert all(r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in records)


def test_peak_memory_is_measured_per_implementation(tmp_path):
    """A reference that allocates 200 MB more per forward must show it; ours must not inherit it."""
    reference = tmp_path / "hog.py"
    reference.write_text(
        "import torch\nfrom zoo.deeperaser.model import DeepEraser\n\n\n"
        "class Hog(DeepEraser):\n"
        "    def forward(self, image, mask, **kwargs):\n"
        "        torch.ones(50_000_000).add_(1).sum()  # 200 MB, freed before returning\n"
        "        return super().forward(image, mask, **kwargs)\n"
    )
    # a fresh process, as users run it: in a test worker that already ran other tests, the hog can reuse
    # memory that stayed resident, and a resident-set measure cannot see it
    out = tmp_path / "bench.json"
    run_tool(
        "bench.py",
        "--model",
        "deeperaser",
        "--size",
        "32",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--set",
        "iters=2",
        "--reference",
        f"{reference}:Hog",
        "--reference-init",
        '{"iters": 2}',
        "--compare",
        "--json",
        str(out),
    )
    records = json.loads(out.read_text())
    memory = {r["implementation"]: r["peak_memory_mb"] for r in records}
    assert memory["reference"] - memory["rezoo"] > 150, memory


def _suite(tmp_path, models: str, *extra: str, **env: str) -> dict[str, list[dict]]:
    """benchmarks/gpu.sh as on a GPU machine, on the CPU at 32 px, batch 2, one repeat."""
    out = tmp_path / "suite"
    settings = dict(DEVICE="cpu", SIZE="32", BATCH="2", WARMUP="0", REPEATS="1", MODELS=models, OUT=str(out), **env)
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        env=dict(os.environ, PYTHON=sys.executable, **settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return {name: json.loads((out / f"{name}_cpu_suite.json").read_text()) for name in models.split()}


def _check_suite_records(records: list[dict], runs) -> None:
    assert [(r["task"], r["mode"]) for r in records] == runs, records
    for r in records:
        assert "error" not in r, r
        assert r["size"] == 32 and r["batch"] == 2 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0
        assert r["flops_per_image"] > 0 and r["tflops"] > 0


def test_gpu_benchmark_runs_every_mode_on_the_cpu(tmp_path):
    """The GPU suite's logic (benchmarks/gpu.sh -> rezoo.bench.suite) at tiny sizes: a broken mode fails here.
    DeepEraser takes a mask, also through torch.compile; GramSR gets the tests' tiny base off a GPU (its compile
    takes minutes on a CPU, so only the eager modes)."""
    runs = [(task, mode) for task, mode, _ in SUITE_RUNS]
    records = _suite(tmp_path, "deeperaser", NET_KWARGS=json.dumps({"deeperaser": {"iters": 2}}))
    _check_suite_records(records["deeperaser"], runs)
    tiny_base = json.dumps({"gramsr": {"base_model": TINY_BASE, "dino_model": DINO}})
    records = _suite(tmp_path, "gramsr", MODES="bf16 eager", NET_KWARGS=tiny_base)
    _check_suite_records(records["gramsr"], [run for run in runs if run[1] != "compile"])
    train, forward = (r["flops_per_image"] for r in records["gramsr"][1:3])
    assert train > forward  # forward + backward


def test_suite_records_a_failing_run_and_goes_on(tmp_path, monkeypatch):
    calls = []

    def fake_main(argv, architecture=None):
        calls.append(argv[argv.index("--mode") + 1])
        if calls[-1] == "bf16":
            raise RuntimeError("broken mode")
        bench_module.save_records([{"model": "ste", "task": "x", "mode": calls[-1]}], Path(argv[-1]))

    monkeypatch.setattr(bench_module, "main", fake_main)
    records = bench_module.suite(["ste"], device="cpu", out_dir=tmp_path, modes=("bf16", "eager"))["ste"]
    assert calls == ["bf16", "eager", "bf16", "eager"]
    assert [r.get("error") for r in records] == ["RuntimeError: broken mode", None] * 2


class KeywordWrapper(torch.nn.Module):
    """What torch.compile returns, for this test's purpose: a wrapper whose forward takes ``*args, **kwargs``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        KeywordWrapper.seen = sorted(kwargs)
        return self.model(*args, **kwargs)


@pytest.mark.parametrize("task", ["forward", "train"])
def test_compile_mode_passes_the_conditions_through_the_wrapper(task, monkeypatch, tmp_path):
    """--mode compile chose the conditions by the compiled wrapper's signature and dropped DeepEraser's mask."""
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: KeywordWrapper(function))
    KeywordWrapper.seen = None
    record = bench(
        ["--model", "deeperaser", "--size", "16", "--batch", "2", "--mode", "compile", "--task", task]
        + ["--warmup", "0", "--repeats", "1", "--device", "cpu", "--set", "iters=2"]
    )
    assert KeywordWrapper.seen == ["mask"] and record["images_per_s"] > 0 and record["flops_per_image"] > 0


def test_bench_checks_its_device_first():
    with pytest.raises(InputError, match="no CUDA GPU|not a device"):
        bench(["--model", "garnet", "--device", "cuda:0" if not torch.cuda.is_available() else "tpu"])
