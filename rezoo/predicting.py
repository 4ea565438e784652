"""``rezoo infer`` on Lightning's prediction loop: :class:`CollectionPredictor` runs a :class:`Predictor` on the
batches of :class:`datamodules.collection.ImageCollection`, and :class:`OutputWriter` (a Lightning
``BasePredictionWriter``) writes each output as its batch is done: atomically (a temporary name, then a
rename), as files or as WebDataset shards, with failures recorded in ``failures.jsonl``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from rezoo.predictor import Predictor, TextFinder
from zoo.errors import InputError
from zoo.imaging.images import encode_png

FAILURES = "failures.jsonl"


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a hidden temporary file in the same folder, renamed when complete: a
    reader (or a rerun) sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class CollectionPredictor(L.LightningModule):
    """A :class:`Predictor` over batches: the model's output for each image (the input kept outside the mask,
    unless ``paste`` is off), masks found by ``finder`` when given, TextDiff's refinement of ``refine`` images."""

    def __init__(
        self,
        predictor: Predictor,
        finder: TextFinder | None = None,
        keep: Sequence[str] = (),
        dilation: int = 0,
        paste: bool = True,
        auto_tile: int = 512,
    ):
        super().__init__()
        self.predictor, self.finder, self.keep, self.dilation, self.paste = predictor, finder, keep, dilation, paste
        self.auto_tile = auto_tile  # the tile side of an image above the pixel budget, when --tile is not given
        self.model = predictor.model  # a submodule, so that Lightning moves it to this rank's device
        self.conditions: dict[str, Any] = {}
        self.notes: list[str] = []

    def on_predict_start(self) -> None:
        self.predictor.device = str(self.device)
        if self.finder is not None:
            self.finder.to(self.device)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        if "image" not in batch:  # a failure record or the end of a shard
            return batch
        image, mask = batch["image"], batch.get("mask")
        found: list[str] = []
        if self.finder is not None:
            masks = []
            for i in range(len(image)):
                one, boxes, kept = self.finder.mask(image[i : i + 1], self.dilation, self.keep)
                masks.append(one.to(image.device))
                found.append(f"{len(boxes)} words to erase" + (f", kept {', '.join(kept)}" if self.keep else ""))
            mask = torch.cat(masks)
        tile = self.predictor.tile
        if batch["alone"] and not tile:
            tile = self.auto_tile
            height, width = image.shape[-2:]
            self.notes.append(f"{batch['sources'][0]} is {width}x{height}, above --max-pixels: tiled ({tile} px)")
        if "refine" in batch:
            with torch.no_grad():
                output = self.predictor.model.refine(image, batch["refine"])
        else:
            given = self.conditions if mask is None else {"mask": mask, **self.conditions}
            output = self.predictor(image, given, tile=tile)
            if self.paste:
                output = self.predictor.keep_outside(output, image, mask, tiled=bool(tile))
        return {
            **{k: batch[k] for k in ("keys", "sources", "shard")},
            "output": output.float().cpu(),
            "mask": mask.cpu() if self.finder is not None else None,
            "found": found,
        }


class OutputWriter(BasePredictionWriter):
    """Writes each output when its batch is done, in a pool of threads (PNG encoding is the slow part):
    ``<out>/<key>.png`` (and ``<out>/masks/<key>.png`` for found masks), or for shards a tar of the input
    shard's name holding ``<key>.png`` (``shards=True``; renamed into place once complete; with ``shards=False``
    ``<out>/<shard>/<key>.png``). Failures stop the run (``on_error='stop'``) or go to ``failures.jsonl``."""

    def __init__(self, out: Path, on_error: str = "stop", shards: bool = False, threads: int = 4):
        super().__init__(write_interval="batch")
        self.out, self.on_error, self.shards = out, on_error, shards
        self.total: int | None = None
        self.skipped_shards = 0
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.pending: dict[str | None, deque[Future]] = defaultdict(deque)
        self.in_flight = threading.BoundedSemaphore(8 * threads)
        self.tars: dict[str, Any] = {}
        self.locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self.written: list[Path] = []
        self.counts = {"written": 0, "failed": 0, "skipped": 0}
        self.progress: Any = None
        self.started = 0.0

    # --- set-up and progress -------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            (self.out / FAILURES).unlink(missing_ok=True)  # this run's failures only; the barrier follows setup

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.started = time.perf_counter()
        collection = trainer.datamodule
        self.counts["skipped"] += collection.skipped if not collection.reads_shards else 0
        self.skipped_shards = collection.skipped if collection.reads_shards else 0
        self.total = collection.images_to_do
        if trainer.is_global_zero:
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s"),
                TimeElapsedColumn(),
            )
            world = f" (rank 0 of {trainer.world_size})" if trainer.world_size > 1 else ""
            self.task = self.progress.add_task(f"images{world}", total=self.total, rate="-")
            self.progress.start()

    def _advance(self, count: int) -> None:
        if self.progress is not None:
            done = self.progress.tasks[0].completed + count
            rate = done / max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(self.task, advance=count, rate=f"{rate:.1f}")

    def print(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line)

    # --- writing ---------------------------------------------------------------------------------------------
    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for note in getattr(pl_module, "notes", []):
            self.print(note)
        pl_module.notes.clear()
        if "failures" in prediction:
            self._failures(prediction["failures"])
        elif "done" in prediction:
            self.counts["skipped"] += prediction["skipped"]
            self._finish_shard(prediction["done"])
        else:
            for i, key in enumerate(prediction["keys"]):
                if prediction["found"]:
                    self.print(f"{prediction['sources'][i]}: {prediction['found'][i]}")
                self._submit(prediction["shard"], key, prediction["output"][i], prediction["mask"], i)
            self._advance(len(prediction["keys"]))

    def _failures(self, failures: list[tuple[str, str]]) -> None:
        if self.on_error == "stop":
            raise InputError(
                f"{failures[0][1]} (--on-error skip goes on past such inputs and lists them in {FAILURES})"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / FAILURES, "a") as file:  # O_APPEND: one whole line per write, from every rank
            for source, reason in failures:
                file.write(json.dumps({"path": source, "reason": reason}) + "\n")
        self.counts["failed"] += len(failures)
        self._advance(len(failures))

    def _submit(self, shard: str | None, key: str, output: torch.Tensor, masks: torch.Tensor | None, i: int) -> None:
        self.in_flight.acquire()
        future = self.pool.submit(self._write, shard, key, output, None if masks is None else masks[i])
        future.add_done_callback(lambda _: self.in_flight.release())
        pending = self.pending[shard]
        pending.append(future)
        while len(pending) > 1 and pending[0].done():  # collected as they finish: no list as long as the collection
            self._collect([pending.popleft()])

    def _write(self, shard: str | None, key: str, output: torch.Tensor, mask: torch.Tensor | None) -> Path | None:
        data = encode_png(output)
        mask_data = None if mask is None else encode_png(mask)
        if shard is not None and self.shards:
            with self.locks[shard]:
                if shard not in self.tars:
                    self.tars[shard] = self._open_tar(shard)
                sample = {"__key__": key, "png": data}
                if mask_data is not None:
                    sample["mask.png"] = mask_data
                self.tars[shard].write(sample)
            return None
        folder = self.out / shard if shard is not None else self.out
        target = folder / f"{key}.png"
        if mask_data is not None:
            write_atomic(folder / "masks" / f"{key}.png", mask_data)
        write_atomic(target, data)
        return target

    def _open_tar(self, shard: str) -> Any:
        import webdataset as wds

        self.out.mkdir(parents=True, exist_ok=True)
        return wds.TarWriter(str(self.out / f".{shard}.tar.partial"))

    def _collect(self, futures: Iterable[Future]) -> None:
        for future in futures:
            path = future.result()  # a failed write raises here
            self.counts["written"] += 1
            if path is not None:
                self.written.append(path)

    def _finish_shard(self, shard: str) -> None:
        self._collect(self.pending.pop(shard, []))
        if self.shards:
            with self.locks[shard]:
                tar = self.tars.pop(shard, None) or self._open_tar(shard)  # no sample: an empty tar marks it done
                tar.close()
                os.replace(self.out / f".{shard}.tar.partial", self.out / f"{shard}.tar")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A stopped run: the progress bar closed, the outputs being written finished (each is whole or absent)."""
        self.pool.shutdown(cancel_futures=True)
        if self.progress is not None:
            self.progress.stop()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for shard in list(self.pending):
            self._collect(self.pending.pop(shard))
        self.pool.shutdown()
        if self.progress is not None:
            self.progress.stop()
        seconds = time.perf_counter() - self.started
        names = ("written", "failed", "skipped", "shards")
        totals = torch.tensor([*(self.counts[k] for k in names[:3]), self.skipped_shards], dtype=torch.float64)
        totals = trainer.strategy.reduce(totals, reduce_op="sum") if trainer.world_size > 1 else totals
        self.totals = dict(zip(names, totals.long().tolist()))
        if trainer.is_global_zero:
            written, failed, skipped, shards = self.totals.values()
            rate = written / seconds / trainer.world_size
            line = f"{written} written, {failed} failed, {skipped} skipped as done"
            line += f" (and {shards} shards done before)" if shards else ""
            devices = f"{trainer.world_size} device{'s' if trainer.world_size > 1 else ''}"
            line += f" in {seconds:.1f} s: {rate:.1f} images/s per device ({devices})"
            print(line + (f"; failures listed in {self.out / FAILURES}" if failed else ""))
