"""Speed and memory benchmark of a zoo model.

    rezoo bench --model deeperaser --size 256 --batch 1 --mode eager --task forward
    rezoo bench --model deeperaser --size 256 --mode channels_last --json benchmarks/deeperaser_cpu.json
    rezoo bench --model deeperaser --size 256 --reference /path/to/DeepEraser/model.py:DeepEraser \
        --reference-kwargs '{"test_mode": true}' --compare   # ours vs the official code, interleaved
    rezoo bench --model garnet --size 512 --reference /path/to/garnet/CODE/model.py:GaRNet \
        --reference-init '{"in_channels": 3}' --reference-input concat --compare
    rezoo bench --model ste --size 512 --reference /path/to/STE/models/src/erase/sa_gan.py:STRnet2 \\
        --reference-input image --compare

Modes: ``eager`` (fp32), ``channels_last`` (fp32, NHWC), ``bf16`` (bf16 autocast), ``compile``
(torch.compile; for ``forward`` with Inductor's weight freezing, which constant-folds the weights and
pre-packs them for oneDNN on CPU — valid because inference does not change them). Tasks: ``forward`` (eval, no
grad) and ``train`` (forward + backward + AdamW step of the
model's training loss on its forward_train output when it has one). Prints and appends JSON records.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import zoo
from rezoo.flags import add_device_option, add_model_options, architecture_kwargs

MODES = ("eager", "channels_last", "bf16", "compile")


def load_reference(spec: str, kwargs: dict) -> torch.nn.Module:
    """``path/to/file.py:ClassName`` -> an instance (its folder is put on sys.path for its imports)."""
    path, _, cls_name = spec.rpartition(":")
    sys.path.insert(0, str(Path(path).resolve().parent))
    module_spec = importlib.util.spec_from_file_location(f"reference_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, cls_name)(**kwargs)


class ConcatInput(torch.nn.Module):
    """Calls a reference network that takes one 4-channel tensor [image in [-1,1], mask]."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.net(torch.cat([image * 2 - 1, mask], dim=1), **kwargs)


class ImageOnly(torch.nn.Module):
    """Calls a reference network that takes the image alone (STE/EraseNet predict their own mask)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.net(image, **kwargs)


class PeakMemory:
    """Peak memory of the steps of one implementation, so interleaved implementations are told apart.

    CUDA: ``max_memory_allocated`` after a reset before each step. CPU (Linux): the kernel's resident-set
    high-water mark (``VmHWM``), reset before each step through ``/proc/self/clear_refs``; where that
    cannot be reset, the resident set sampled every millisecond by a thread. Either way, what the step
    needed above what was allocated before it, plus the implementation's own parameters and buffers.
    """

    def __init__(self, device: str, model: torch.nn.Module | None):
        self.device = device
        self.model_mb = (
            sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20
            if model is not None
            else 0.0
        )
        self.step_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20

    @staticmethod
    def _reset_high_water_mark() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
            return True
        except OSError:
            return False

    @staticmethod
    def _high_water_mark_mb() -> float:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024

    def measure(self, step: Callable[[], None]) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            self.step_mb = max(self.step_mb, (torch.cuda.max_memory_allocated() - before) / 2**20)
            return
        before = peak = self._rss_mb()
        if self._reset_high_water_mark():
            step()
            self.step_mb = max(self.step_mb, self._high_water_mark_mb() - before)
            return
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.001):
                peak = max(peak, self._rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            step()
        finally:
            done.set()
            sampler.join()
        self.step_mb = max(self.step_mb, max(peak, self._rss_mb()) - before)

    @property
    def peak_mb(self) -> float:
        return round(self.model_mb + self.step_mb, 1)


def output_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor of a ``forward_train`` output (a tensor, a list/tuple or a typed dataclass)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if dataclasses.is_dataclass(output):
        output = [getattr(output, f.name) for f in dataclasses.fields(output)]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in output_tensors(item)]
    return []


REFERENCE_INPUTS = {"image_mask": lambda net: net, "concat": ConcatInput, "image": ImageOnly}


def make_inputs(
    name: str, batch: int, size: int, device: str, mode: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``zoo.example_inputs`` of model ``name`` (super-resolution: a ``size / scale`` input, so every output is
    ``size``; recognizers a crop of their height, ``size`` wide) and, for super-resolution, the ``size`` HR a
    training step takes (``forward_train(lr, hr)``)."""
    info = zoo.model_info(name)
    generator = torch.Generator().manual_seed(0)
    image, conditions = zoo.example_inputs(name, batch, size, generator=generator)
    if info.task == "super_resolution":
        conditions["hr"] = torch.rand(batch, 3, size, size, generator=generator)
    if mode == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
        conditions = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in conditions.items()
        }
    return image.to(device), {k: v.to(device) for k, v in conditions.items()}


def make_step(
    model: torch.nn.Module, args: argparse.Namespace, reference_kwargs: dict | None = None
) -> Callable[[], None]:
    """One timed unit of work (a forward, or a training step) of ``model`` in ``args.mode``. Ours takes
    its conditions as keywords; a reference (``reference_kwargs`` not None) positionally, after the image."""
    device, mode = args.device, args.mode
    info = zoo.model_info(args.model)
    model = model.to(device)
    if mode == "channels_last":
        for tensor in [
            *model.parameters(),
            *model.buffers(),
        ]:  # 4-D tensors only (prompts, temperatures are not images)
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    image, conditions = make_inputs(args.model, args.batch, args.size, device, mode)
    if reference_kwargs is not None:  # the official code: the conditions positionally, after the image
        conditions = {k: v for k, v in conditions.items() if k in info.conditions}
        train_forward = model.forward

        def call(function: Callable[..., Any]) -> Any:
            return function(image, *conditions.values(), **reference_kwargs)

    else:  # forward_train takes the conditions it uses (STE's predicts its own mask; SR's takes the HR)
        train_forward = model.forward_train if info.train_forward else model.forward
        takes = info.conditions if args.task == "forward" else inspect.signature(train_forward).parameters
        conditions = {k: v for k, v in conditions.items() if k in takes}

        def call(function: Callable[..., Any]) -> Any:
            return function(image, **conditions)

    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=mode == "bf16")
    if args.task == "forward":
        model.eval()
        if mode == "compile":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        runner = torch.compile(model) if mode == "compile" else model

        def step() -> None:
            with torch.no_grad(), autocast:
                call(runner)

        return step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    runner = torch.compile(train_forward) if mode == "compile" else train_forward

    def train_step() -> None:
        with autocast:
            loss = sum(o.float().abs().mean() for o in output_tensors(call(runner)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


def time_steps(
    steps: dict[str, Callable[[], None]], models: dict[str, torch.nn.Module], args: argparse.Namespace
) -> dict[str, dict]:
    """Warm up, then time every step ``args.repeats`` times; several steps are interleaved (a, b, a, b,
    ...) so that drift in the machine's speed affects them alike. Then one untimed step each under
    :class:`PeakMemory`, so that each implementation's memory is its own."""
    device = args.device

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for step in steps.values():
        for _ in range(args.warmup):
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    results = {}
    for name, values in times.items():
        memory = PeakMemory(device, models.get(name))
        memory.measure(steps[name])
        median = statistics.median(values)
        results[name] = {
            "seconds_per_batch": median,
            "images_per_s": args.batch / median,
            "peak_memory_mb": memory.peak_mb,
            "times": [round(t, 4) for t in values],
            "interleaved_with": [n for n in steps if n != name],
        }
    return results


def markdown_table(records: list[dict]) -> str:
    """A README table of recorded benchmark results."""
    lines = [
        "| model | implementation | task | mode | size | batch | device | threads | img/s | s/batch | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:  # e.g. out of memory (benchmarks/gpu.sh)
            lines.append(
                f"| {r['model']} | rezoo | {r['task']} | {r['mode']} | {r['size']} | {r['batch']} "
                f"| | | {r['error']} | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['implementation']} | {r['task']} | {r['mode']} | {r['size']} | {r['batch']} | "
            f"{r.get('gpu') or r['device']} | {r['threads']} | {r['images_per_s']:.3g} | "
            f"{r['seconds_per_batch']:.3g} | {r['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "rezoo bench") -> dict:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", type=Path, default=None, help="print a markdown table of a results file and exit")
    add_model_options(parser, required=False, weights_help="--task sampling: the trained weights (a run's checkpoint)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="eager")
    parser.add_argument(
        "--task",
        choices=("forward", "train", "sampling"),
        default="forward",
        help="sampling (diffusion models): time and score the full and the fast sampler on a run's validation set",
    )
    parser.add_argument(
        "--data-config",
        type=Path,
        default=None,
        help="--task sampling: the run's config.yaml, whose data section gives the validation set",
    )
    parser.add_argument("--fast-steps", type=int, default=10, help="--task sampling: steps of the fast sampler")
    add_device_option(parser)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--reference", default=None, help="file.py:Class of another implementation to time instead")
    parser.add_argument("--reference-kwargs", default="{}", help="JSON kwargs for the reference forward call")
    parser.add_argument("--reference-init", default="{}", help="JSON kwargs for the reference constructor")
    parser.add_argument(
        "--reference-input",
        choices=tuple(REFERENCE_INPUTS),
        default="image_mask",
        help="how the reference takes its input: (image, mask); one tensor [2·image − 1, mask] "
        "(GaRNet/EnsNet style); the image alone (STE)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="with --reference: time ours too, interleaved, same weights"
    )
    parser.add_argument("--json", type=Path, default=None, help="append the JSON records to this file (a JSON list)")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return {}
    if not args.model:
        parser.error("--model is required")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.task == "sampling":
        return save_records(sampling_records(args), args.json)
    steps, models = {}, {}
    if args.reference:
        models["reference"] = reference = load_reference(args.reference, json.loads(args.reference_init))
        steps["reference"] = make_step(
            REFERENCE_INPUTS[args.reference_input](reference), args, json.loads(args.reference_kwargs)
        )
    if not args.reference or args.compare:
        models["rezoo"] = ours = zoo.create_model(args.model, **architecture_kwargs(args.set))
        if args.reference:  # same weights as the reference (its key names are the official ones)
            zoo.load_weights(ours, args.model, _save_state(reference), progress=False)
        steps = {"rezoo": make_step(ours, args), **steps}
    common = {
        "model": args.model,
        "reference": args.reference,
        "size": args.size,
        "batch": args.batch,
        "mode": args.mode,
        "task": args.task,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
    }
    records = [{"implementation": name, **common, **result} for name, result in time_steps(steps, models, args).items()]
    return save_records(records, args.json)


def save_records(records: list[dict], out: Path | None) -> dict | list[dict]:
    """Print the records as JSON lines and append them to ``out`` (a JSON list)."""
    for record in records:
        print(json.dumps(record))
    if out:
        previous = json.loads(out.read_text()) if out.exists() else []
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(previous + records, indent=1))
    return records[0] if len(records) == 1 else records


def sampling_records(args: argparse.Namespace) -> list[dict]:
    """A diffusion model's samplers on a run's validation set: seconds per image and PSNR of the full
    sampler (all T steps) and the fast one (``--fast-steps``), and the diffusion stage refining the
    bicubic upsampling (``model.refine``): PSNR before and after."""
    import time

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from zoo.errors import UserError
    from zoo.metrics import psnr

    if not args.weights or not args.data_config:
        raise UserError("--task sampling needs --weights <checkpoint> and --data-config <run>/config.yaml")
    if not zoo.model_info(args.model).sampler:
        raise UserError(f"--task sampling is for diffusion models; {args.model} has no sampler")
    model = zoo.create_model(args.model, pretrained=args.weights).eval().to(args.device)
    datamodule = instantiate(OmegaConf.load(args.data_config).data)
    datamodule.setup("validate")
    batches = [
        {k: v.to(args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for batch in datamodule.val_dataloader()
    ]
    images = sum(len(batch["lr"]) for batch in batches)
    common = {
        "model": args.model,
        "weights": str(args.weights),
        "task": "sampling",
        "images": images,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }

    def run(function) -> tuple[float, float]:
        scores, start = [], time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                scores.append(psnr(function(batch).float().clamp(0, 1), batch["target"].float()))
        return (time.perf_counter() - start) / images, float(torch.cat(scores).mean())

    records = []
    for name, steps in (("full", model.timesteps), ("fast", args.fast_steps)):
        seconds, value = run(lambda batch, steps=steps: model(batch["lr"], steps=steps))
        records.append({**common, "sampler": name, "steps": steps, "s_per_image": seconds, "psnr": value})
    records.append(
        {
            **common,
            "sampler": "speedup",
            "full_over_fast": records[0]["s_per_image"] / records[1]["s_per_image"],
            "psnr_full_minus_fast": records[0]["psnr"] - records[1]["psnr"],
        }
    )
    bicubic = float(torch.cat([psnr(batch["image"].float(), batch["target"].float()) for batch in batches]).mean())
    seconds, refined = run(lambda batch: model.refine(batch["lr"], batch["image"]))
    records.append(
        {
            **common,
            "sampler": "refine_bicubic",
            "steps": model.sample_steps or model.timesteps,
            "s_per_image": seconds,
            "psnr_before": bicubic,
            "psnr": refined,
        }
    )
    return records


def _save_state(model: torch.nn.Module) -> Path:
    """The reference's state_dict in a temporary file, for ``zoo.load_weights``."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "reference.pth"
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    main()
