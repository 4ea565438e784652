"""Collections of images to run a model on (``rezoo infer``): one image, a folder (recursive), a text file
listing paths, or WebDataset tar shards. Images are decoded in DataLoader workers, split between ranks
(each input goes to exactly one), and batched with images of the same size, so that a batch runs as the
images would one by one. A sample that cannot be read becomes a failure record, for the writer to stop
on or to record (``--on-error``)."""

from __future__ import annotations

import io
import os
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from zoo.errors import InputError
from zoo.imaging.images import IMAGE_EXTENSIONS, BadSampleError, decode_image, read_image, to_tensor
from zoo.imaging.masks import dilate_mask, read_mask

SHARD_IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")  # a WebDataset sample's image, the first one present
SHARD_MASK_KEY = "mask.png"


@dataclass(frozen=True)
class Item:
    """One input file: ``key`` names its outputs (its path below the input folder, without suffix);
    ``partners`` the files paired with it by key or stem (``mask``, ``refine``)."""

    key: str
    path: Path
    partners: dict[str, Path] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be read, found while listing (recorded with --on-error skip)


@dataclass(frozen=True)
class Shard:
    """One WebDataset tar shard; ``name`` is its file name without ``.tar`` (the output shard's name)."""

    name: str
    url: str


def is_shard_pattern(text: str) -> bool:
    return text.endswith(".tar") or ".tar" in text and "{" in text


def list_shards(pattern: str) -> list[Shard]:
    """The shards a brace pattern (``shards/{00000..00999}.tar``) names, each checked to exist."""
    import braceexpand

    urls = list(braceexpand.braceexpand(pattern))
    missing = [url for url in urls if not Path(url).is_file()]
    if missing:
        raise InputError(
            f"--input {pattern}: {len(missing)} of {len(urls)} shards do not exist, e.g. {missing[0]} "
            "(give local .tar files, e.g. 'shards/{00000..00009}.tar')"
        )
    names = [Path(url).name.removesuffix(".tar") for url in urls]
    if len(set(names)) != len(names):
        raise InputError(f"--input {pattern}: two shards share a file name; outputs are named after the shards")
    return [Shard(name, url) for name, url in zip(names, urls)]


def list_files(path: Path) -> list[Item]:
    """The images of ``--input``: a file; a folder, recursively (keys keep the sub-folders); or a ``.txt``
    file with one path per line (relative to the list's folder; keys below the listed files' common folder)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in --input {path} or its sub-folders")
        root = path
    elif path.suffix.lower() == ".txt" and path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        files = [(path.parent / line) for line in lines]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(f"--input {path} lists {len(missing)} files that do not exist, e.g. {missing[0]}")
        if not files:
            raise InputError(f"--input {path} lists no files (one image path per line)")
        root = Path(os.path.commonpath([f.parent.resolve() for f in files]))
        files = [f.resolve() for f in files]
    elif path.is_file():
        return [Item(path.stem, path)]
    else:
        raise InputError(f"--input {path} does not exist (give an image, a folder, a .txt list or .tar shards)")
    items = [Item(f.relative_to(root).with_suffix("").as_posix(), f) for f in files]
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise InputError(f"--input {path}: two images would write {twice}.png (same name, other suffix)")
    return items


class Partners:
    """The files of ``--<option>`` (a file for every input, or a folder) paired with inputs: the file at the
    input's relative path, else the one file with the input's stem anywhere in the folder."""

    def __init__(self, path: Path, option: str):
        self.path, self.option = path, option
        if not path.exists():
            raise InputError(
                f"--{option} {path} does not exist (give an image, or a folder of images named like the inputs)"
            )
        self.by_key: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file():
                    self.by_key[file.relative_to(path).with_suffix("").as_posix()] = file
                    self.by_stem[file.stem].append(file)

    def find(self, item: Item) -> Path:
        if self.path.is_file():
            return self.path
        found = self.by_key.get(item.key) or (self.by_stem[Path(item.key).name] or [None, None])
        if isinstance(found, Path):
            return found
        if len(found) == 1:
            return found[0]
        reason = "two files share its stem there" if found[0] is not None else "none has its name"
        raise BadSampleError(
            f"no {self.option} for {item.path} in {self.path}: {reason} (they pair by relative path or file stem)"
        )


@dataclass
class ReadOptions:
    """How a sample is read: which partners it has, and what to do with a mask."""

    mask_dilation: int = 0
    resize_mask: bool = False
    max_pixels: int = 0  # above it, an image runs alone (tiled by the predictor); 0: no limit
    scale: int = 1  # refine images are ``scale`` times the input


def read_partner_mask(
    file: Path | io.BytesIO, image: torch.Tensor, image_name: str, options: ReadOptions, name: str | None = None
) -> torch.Tensor:
    """An input's mask as a (1,H,W) {0,1} tensor of its image's size, grown by ``mask_dilation``."""
    height, width = image.shape[-2:]
    hint = ", or pass --resize-mask to scale it (nearest neighbour)"
    mask = read_mask(file, height, width, image_name, name, options.resize_mask, hint)
    return dilate_mask(mask, options.mask_dilation)


def read_item(item: Item, options: ReadOptions) -> dict[str, Any]:
    """An input file and its partners as tensors (``image`` (3,H,W); ``mask`` (1,H,W); ``refine``)."""
    if item.problem:
        raise BadSampleError(item.problem)
    image = to_tensor(read_image(item.path, "RGB"))
    sample: dict[str, Any] = {"key": item.key, "source": str(item.path), "image": image}
    if "mask" in item.partners:
        sample["mask"] = read_partner_mask(item.partners["mask"], image, str(item.path), options)
    if "refine" in item.partners:
        coarse = to_tensor(read_image(item.partners["refine"], "RGB"))
        expected = (image.shape[-2] * options.scale, image.shape[-1] * options.scale)
        if coarse.shape[-2:] != expected:
            raise BadSampleError(
                f"--refine image {item.partners['refine']} is {coarse.shape[-1]}x{coarse.shape[-2]}; "
                f"{item.path} needs {expected[1]}x{expected[0]} ({options.scale}x)"
            )
        sample["refine"] = coarse
    return sample


def read_shard_sample(raw: dict[str, Any], shard: Shard, options: ReadOptions, want_mask: bool) -> dict[str, Any]:
    """A WebDataset sample (the image under ``png``/``jpg``/``webp``, a mask under ``mask.png``) as tensors."""
    key = raw["__key__"]
    source = f"{shard.url}:{key}"
    image_key = next((k for k in SHARD_IMAGE_KEYS if k in raw), None)
    if image_key is None:
        raise BadSampleError(
            f"{source} has no image (keys {', '.join(sorted(k for k in raw if k[0] != '_'))}; "
            f"expected one of {', '.join(SHARD_IMAGE_KEYS)})"
        )
    image = to_tensor(decode_image(raw[image_key], f"{source}.{image_key}"))
    sample: dict[str, Any] = {"key": key, "source": source, "image": image}
    if want_mask:
        if SHARD_MASK_KEY not in raw:
            raise BadSampleError(f"{source} has no {SHARD_MASK_KEY} (the mask, white = text to erase)")
        mask = io.BytesIO(raw[SHARD_MASK_KEY])
        sample["mask"] = read_partner_mask(mask, image, source, options, f"{source}.{SHARD_MASK_KEY}")
    return sample


def collate(samples: list[dict[str, Any]], shard: str | None, alone: bool = False) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "keys": [s["key"] for s in samples],
        "sources": [s["source"] for s in samples],
        "shard": shard,
        "alone": alone,
    }
    for name in ("image", "mask", "refine"):
        if name in samples[0]:
            batch[name] = torch.stack([s[name] for s in samples])
    return batch


class CollectionDataset(IterableDataset):
    """This rank's inputs (files or shards), split again between DataLoader workers, read and batched by size.

    Yields batches (``keys``, ``sources``, ``image``, optional ``mask``/``refine``, ``shard``, ``alone``: an image
    above ``max_pixels``, run alone), ``{"failures": [(source, reason)]}`` for unreadable samples, and for shards
    ``{"done": name, "count": n}`` once a shard's samples are all yielded."""

    def __init__(
        self,
        units: list[Item] | list[Shard],
        options: ReadOptions,
        batch_size: int,
        want_mask: bool = False,
        skip_sample: Any = None,
    ):
        self.units, self.options, self.batch_size = units, options, batch_size
        self.want_mask, self.skip_sample = want_mask, skip_sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        units = self.units[worker.id :: worker.num_workers] if worker else self.units
        if units and isinstance(units[0], Shard):
            for shard in units:
                yield from self._shard(shard)
        else:
            yield from self._batches(((item, None) for item in units), None)

    def _batches(self, reads: Iterator[tuple[Any, Any]], shard: Shard | None) -> Iterator[dict[str, Any]]:
        """Batches of same-sized samples from ``reads`` ((item, raw) pairs), flushed at the end."""
        buckets: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        name = shard.name if shard else None
        for item, raw in reads:
            try:
                sample = (
                    read_item(item, self.options)
                    if shard is None
                    else (read_shard_sample(raw, shard, self.options, self.want_mask))
                )
            except BadSampleError as error:
                yield {
                    "failures": [(str(item.path) if shard is None else f"{shard.url}:{raw['__key__']}", str(error))],
                    "shard": name,
                }
                continue
            height, width = sample["image"].shape[-2:]
            if self.options.max_pixels and height * width > self.options.max_pixels:
                yield collate([sample], name, alone=True)
                continue
            size = tuple(sample["image"].shape) + tuple(sample.get("refine", torch.empty(0)).shape)
            buckets[size].append(sample)
            if len(buckets[size]) == self.batch_size:
                yield collate(buckets.pop(size), name)
        for samples in buckets.values():
            yield collate(samples, name)

    def _shard(self, shard: Shard) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        count = skipped = 0

        def reads() -> Iterator[tuple[Any, dict[str, Any]]]:
            nonlocal count, skipped
            samples = wds.WebDataset(
                [shard.url], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
            )
            for raw in samples:
                count += 1
                if self.skip_sample is not None and self.skip_sample(shard.name, raw["__key__"]):
                    skipped += 1
                    continue
                yield Item(raw["__key__"], Path(shard.url)), raw

        try:
            yield from self._batches(reads(), shard)
        except (tarfile.TarError, OSError, ValueError) as error:  # a truncated or corrupt tar
            yield {"failures": [(shard.url, f"cannot read shard {shard.url}: {error}")], "shard": shard.name}
        yield {"done": shard.name, "count": count, "skipped": skipped}


class ImageCollection(L.LightningDataModule):
    """The prediction data of ``rezoo infer``: ``units`` (files or shards) split between ranks by index in the
    full listing (so every rank computes the same split, whatever is already done), read in ``workers``
    DataLoader workers."""

    def __init__(
        self,
        units: list[Item] | list[Shard],
        options: ReadOptions,
        batch_size: int = 1,
        workers: int = 2,
        want_mask: bool = False,
        is_done: Any = None,
        skip_sample: Any = None,
    ):
        super().__init__()
        self.units, self.options, self.batch_size, self.workers = units, options, batch_size, workers
        self.want_mask, self.is_done, self.skip_sample = want_mask, is_done, skip_sample
        self.todo: list[Any] = []
        self.skipped = 0

    def setup(self, stage: str | None = None) -> None:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        mine = self.units[rank::world]
        self.todo = [unit for unit in mine if not (self.is_done and self.is_done(unit))]
        self.skipped = len(mine) - len(self.todo)

    def predict_dataloader(self) -> DataLoader:
        dataset = CollectionDataset(self.todo, self.options, self.batch_size, self.want_mask, self.skip_sample)
        workers = min(self.workers, len(self.todo))
        pin = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin)

    @property
    def reads_shards(self) -> bool:
        return bool(self.units) and isinstance(self.units[0], Shard)

    @property
    def images_to_do(self) -> int | None:
        """How many images this rank reads (``None`` for shards: known once read)."""
        return None if self.reads_shards else len(self.todo)
