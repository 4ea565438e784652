"""The torchvision compat step: both branches, in fresh interpreters (it must run before import)."""

import subprocess
import sys
from pathlib import Path

import torch

from zoo._compat import nms

COMPAT_FILE = Path(__file__).resolve().parents[1] / "zoo" / "_compat.py"

# Load zoo/_compat.py on its own: importing the zoo package would already run the real step.
LOAD_COMPAT = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("compat", {str(COMPAT_FILE)!r})
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
"""

SIMULATED_FAILURE = (
    LOAD_COMPAT
    + """
def failing_load():
    raise OSError("libcudart.so: cannot open shared object file (simulated)")
assert compat.ensure_torchvision_importable(failing_load) == "pure-torch"
import torch, torchvision
from torchvision.transforms import v2  # torchvision imports and works
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
print(torch.ops.torchvision.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist())
"""
)

SIMULATED_SUCCESS = (
    LOAD_COMPAT
    + """
assert compat.ensure_torchvision_importable(lambda: None) == "native"
assert compat._LIBRARY is None  # nothing registered when the compiled ops load
print("native")
"""
)


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_failing_compiled_ops_get_pure_torch_nms():
    assert run_python(SIMULATED_FAILURE) == "[0, 2]"


def test_loading_compiled_ops_changes_nothing():
    assert run_python(SIMULATED_SUCCESS) == "native"


def test_importing_zoo_makes_torchvision_importable():
    out = run_python("import zoo, torchvision; print(zoo.TORCHVISION_OPS in ('native', 'pure-torch'))")
    assert out == "True"


def test_pure_torch_nms_matches_brute_force():
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(60, 2, generator=generator) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=generator) * 20], dim=1)
    scores = torch.rand(60, generator=generator)
    keep = nms(boxes, scores, 0.4)

    def iou(a, b):
        wh = (torch.min(a[2:], b[2:]) - torch.max(a[:2], b[:2])).clamp(min=0)
        inter = wh.prod()
        return inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter)

    expected = []
    for i in scores.argsort(descending=True).tolist():
        if all(iou(boxes[i], boxes[j]) <= 0.4 for j in expected):
            expected.append(i)
    assert keep.tolist() == expected
