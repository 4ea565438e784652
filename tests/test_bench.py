"""``rezoo bench``: inputs from ``zoo.model_info`` for every model, typed training outputs, and peak
memory measured per implementation when two are interleaved."""

from __future__ import annotations

import json

import pytest

import zoo
from rezoo.bench import main as bench
from tests.conftest import TINY_NETS, run_tool


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
