"""Command-line options the rezoo tools share, so that each means the same in every command.

``--model``/``--weights``/``--set KEY=VALUE`` (architecture arguments), ``--device`` (one default: CUDA when
there is a GPU), ``--precision``, ``--tile``/``--overlap``. ``--out`` is always a folder; a single file a
command writes is named for what it is (``score --json``, ``bench --json``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

import zoo
from zoo.errors import InputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> str:
    """``cuda`` when a CUDA GPU is there, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str, precision: str | None = None) -> str:
    """``device`` (and ``precision`` on it) checked before anything runs: a device that is there, and not fp16 on
    a CPU (emulated, tens of times slower than bf16). Returns the device."""
    kind, _, index = device.partition(":")
    if kind == "gpu":
        raise InputError(f"--device {device}: write cuda{':' + index if index else ''} (or cpu)")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise InputError(f"--device {device} is not a device: give cpu, cuda or cuda:N")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {device}: this machine has no CUDA GPU (or torch was built without CUDA); use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(
                f"--device {device}: there are {torch.cuda.device_count()} GPUs (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    if precision == "fp16" and kind == "cpu":
        raise InputError("--precision fp16 on the CPU is emulated and tens of times slower: use bf16 or fp32")
    return device


def check_output_dir(path: Path, option: str = "--out") -> Path:
    """``path`` usable as an output folder, checked before any compute: not a file, and creatable and
    writable (the nearest existing parent is). Creates nothing."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder (it is created if missing)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {existing} is not writable; choose a folder you can write to")
    return path


def add_model_options(parser: argparse.ArgumentParser, required: bool = True, weights_help: str | None = None) -> None:
    """``--model``, ``--weights`` and ``--set KEY=VALUE`` (architecture arguments)."""
    parser.add_argument("--model", required=required, choices=zoo.list_models())
    parser.add_argument(
        "--weights",
        default=None,
        help=weights_help or "manifest tag, file or URL (default: the model's default tag)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="architecture arguments, e.g. iters=4"
    )


def add_device_option(parser: argparse.ArgumentParser, help: str = "cpu, cuda or cuda:N") -> None:
    parser.add_argument("--device", default=default_device(), help=f"{help} (default: cuda when available)")


def add_run_options(parser: argparse.ArgumentParser, tile_help: str = "tile size (0: whole image)") -> None:
    """``--device``, ``--precision``, ``--tile`` and ``--overlap``: how a model runs on images."""
    add_device_option(parser)
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    parser.add_argument("--tile", type=int, default=0, help=tile_help)
    parser.add_argument("--overlap", type=int, default=32)


def parse_value(text: str) -> Any:
    """A ``--set`` value: an int, a float, true/false, null (None), a JSON list or object, or the string itself."""
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"--set value {text!r} is not valid JSON ({error.msg}); write lists as [1,2,3]") from None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def architecture_kwargs(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE ...`` as keyword arguments of the model's builder."""
    malformed = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if malformed:
        raise InputError(f"--set takes KEY=VALUE pairs (e.g. --set iters=4 inference_size=null); got {malformed}")
    return {key: parse_value(value) for key, value in (item.split("=", 1) for item in items)}
