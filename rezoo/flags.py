"""Command-line options the rezoo tools share, so that each means the same in every command.

``--model``/``--weights``/``--set KEY=VALUE`` (architecture arguments), ``--device`` (one default: CUDA when
there is a GPU), ``--precision``, ``--tile``/``--overlap``. ``--out`` is always a folder; a single file a
command writes is named for what it is (``score --json``, ``bench --json``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

import zoo
from zoo.errors import InputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> str:
    """``cuda`` when a CUDA GPU is there, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
