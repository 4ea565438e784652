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
model's training loss on its forward_train output when it has one). Prints and appends JSON records; each
has ``flops_per_image`` (``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions and attention of
one uncompiled step, forward or forward + backward, counted once, divided by the batch) and ``tflops`` (those
FLOPs over the median step time: the achieved TFLOP/s).

:func:`suite` is the GPU benchmark of every model (``benchmarks/gpu.sh``); it also runs on the CPU at tiny
sizes, as the tests do.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import zoo
from rezoo.flags import add_device_option, add_model_options, architecture_kwargs, check_device
from zoo.errors import InputError

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


def make_step(model: torch.nn.Module, args: argparse.Namespace, reference_kwargs: dict | None = None) -> Step:
    """One timed unit of work (a forward, or a training step) of ``model`` in ``args.mode``. Ours takes
    its conditions as keywords, also through ``torch.compile``'s wrapper (they are chosen by the model's
    own signature, never the wrapper's); a reference (``reference_kwargs`` not None) positionally, after the
    image."""
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

        def forward(function: Callable[..., Any]) -> None:
            with torch.no_grad(), autocast:
                call(function)

        def uncompiled_forward() -> None:  # parameters frozen: torch's module tracker fails on no-grad views of them
            flags = [(p, p.requires_grad) for p in model.parameters()]
            model.requires_grad_(False)
            try:
                forward(model)
            finally:
                for parameter, flag in flags:
                    parameter.requires_grad_(flag)

        return Step(lambda: forward(runner), uncompiled_forward)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    runner = torch.compile(train_forward) if mode == "compile" else train_forward

    def backward(function: Callable[..., Any]) -> None:
        with autocast:
            loss = sum(o.float().abs().mean() for o in output_tensors(call(function)))
        loss.backward()

    def train_step() -> None:
        backward(runner)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def uncompiled() -> None:  # forward + backward, no update (the optimizer's work is not matmuls)
        backward(train_forward)
        optimizer.zero_grad(set_to_none=True)

    return Step(train_step, uncompiled)


@dataclasses.dataclass
class Step:
    """One timed unit of work (``step()``) and the same work uncompiled, whose FLOPs :meth:`flops` counts."""

    run: Callable[[], None]
    uncompiled: Callable[[], None]

    def __call__(self) -> None:
        self.run()

    def flops(self) -> int:
        """The FLOPs of one step (``torch.utils.flop_counter``: matmuls, convolutions, attention; forward and,
        for training, backward), counted on the uncompiled model: the same work, which Inductor's kernels hide."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.uncompiled()
        return int(counter.get_total_flops())


def time_steps(steps: dict[str, Step], models: dict[str, torch.nn.Module], args: argparse.Namespace) -> dict[str, dict]:
    """Warm up, then time every step ``args.repeats`` times; several steps are interleaved (a, b, a, b,
    ...) so that drift in the machine's speed affects them alike. Then one untimed step each under
    :class:`PeakMemory`, so that each implementation's memory is its own, and one uncompiled step under
    the FLOP counter (``flops_per_image``, and ``tflops`` = FLOPs per step over the median time)."""
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
        flops = steps[name].flops() if isinstance(steps[name], Step) else None
        results[name] = {
            "seconds_per_batch": median,
            "images_per_s": args.batch / median,
            "peak_memory_mb": memory.peak_mb,
            "flops_per_image": None if flops is None else flops / args.batch,
            "tflops": None if flops is None else flops / median / 1e12,
            "times": [round(t, 4) for t in values],
            "interleaved_with": [n for n in steps if n != name],
        }
    return results


def markdown_table(records: list[dict]) -> str:
    """A README table of recorded benchmark results (GFLOP/img and TFLOP/s blank in records that predate them)."""
    lines = [
        "| model | implementation | task | mode | size | batch | device | threads | img/s | s/batch | peak MB "
        "| GFLOP/img | TFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:  # e.g. out of memory (benchmarks/gpu.sh)
            lines.append(
                f"| {r['model']} | rezoo | {r['task']} | {r['mode']} | {r['size']} | {r['batch']} "
                f"| | | {r['error']} | | | | |"
            )
            continue
        flops = r.get("flops_per_image")
        work = "" if flops is None else f"{flops / 1e9:.3g}"
        speed = "" if r.get("tflops") is None else f"{r['tflops']:.3g}"
        lines.append(
            f"| {r['model']} | {r['implementation']} | {r['task']} | {r['mode']} | {r['size']} | {r['batch']} | "
            f"{r.get('gpu') or r['device']} | {r['threads']} | {r['images_per_s']:.3g} | "
            f"{r['seconds_per_batch']:.3g} | {r['peak_memory_mb']:.0f} | {work} | {speed} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "rezoo bench", architecture: dict | None = None) -> dict:
    """``rezoo bench``; ``architecture``: builder keyword arguments over ``--set``'s (any value, e.g. configs)."""
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
    check_device(args.device)  # a device that is not there: one line, before any model is built
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
        kwargs = {**architecture_kwargs(args.set), **(architecture or {})}
        models["rezoo"] = ours = zoo.create_model(args.model, **kwargs)
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


# benchmarks/gpu.sh: (task, mode, which size) of every model
SUITE_RUNS = (
    ("train", "bf16", "train"),
    ("train", "eager", "train"),
    ("forward", "bf16", "forward"),
    ("forward", "eager", "forward"),
    ("forward", "compile", "forward"),
)


def suite_architecture(name: str, device: str, given: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments :func:`suite` gives ``name``: ``given`` (``NET_KWARGS``), and for a model whose frozen base
    comes by argument (GramSR) and is not given, on a GPU the released base's configurations with random weights
    (``ModelInfo.base_configs``: SD-2.1-base, DINOv3 ViT-B/16); elsewhere the base must be given (the tests give the
    tiny stack of ``tests/gramsr_fixtures.py``)."""
    info = zoo.model_info(name)
    if all(argument in given for argument in info.base):
        return given
    if not device.startswith("cuda") or not info.base_configs:
        raise InputError(
            f"{name} needs its frozen base ({', '.join(info.base)}): off a GPU give it in NET_KWARGS, e.g. "
            f'NET_KWARGS=\'{{"{name}": {{"{info.base[0]}": "<folder>", ...}}}}\''
        )
    return {**info.base_configs, **given}


def suite(
    models: Sequence[str] | None = None,
    device: str = "cuda",
    train_size: int = 256,
    forward_size: int = 512,
    batch: int = 8,
    warmup: int = 3,
    repeats: int = 10,
    modes: Sequence[str] | None = None,
    seconds_per_model: float | None = None,
    out_dir: Path = Path("benchmarks"),
    net_kwargs: dict[str, dict] | None = None,
) -> dict[str, list[dict]]:
    """The GPU benchmark (``benchmarks/gpu.sh``): for every model (default: all registered), a training step in
    bf16-mixed and fp32 at ``train_size`` and a forward in bf16, fp32 and ``compile`` at ``forward_size``
    (:data:`SUITE_RUNS`; ``modes`` keeps some), ``batch`` images, written to ``out_dir/<model>_gpu.json`` (off a
    GPU ``<model>_<device>_suite.json``, so the curated CPU records stay). Each record has img/s, peak memory,
    ``flops_per_image`` and ``tflops``. A run out of memory, or that fails, is recorded with its ``error`` and the
    next one runs; runs past ``seconds_per_model`` are skipped. ``net_kwargs``: builder arguments per model (tiny
    networks in the tests) over :func:`suite_architecture`'s. TF32 is allowed for fp32 on CUDA. Returns the
    records per model."""
    import gc
    import traceback

    check_device(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    unknown = set(modes or ()) - set(MODES)
    if unknown:
        raise InputError(f"modes {sorted(unknown)} are not bench modes {MODES}")
    runs = [run for run in SUITE_RUNS if not modes or run[1] in modes]
    sizes = {"train": train_size, "forward": forward_size}
    results: dict[str, list[dict]] = {}
    for name in models or zoo.list_models():
        out = Path(out_dir) / (f"{name}_gpu.json" if cuda else f"{name}_{device.split(':')[0]}_suite.json")
        out.unlink(missing_ok=True)
        architecture = suite_architecture(name, device, (net_kwargs or {}).get(name, {}))
        start = time.perf_counter()
        for task, mode, which in runs:
            size = sizes[which]
            if seconds_per_model is not None and time.perf_counter() - start > seconds_per_model:
                print(f"{name}: time budget spent, skipping {task}/{mode}/{size}")
                continue
            argv = ["--model", name, "--task", task, "--mode", mode, "--size", str(size), "--batch", str(batch)]
            argv += ["--warmup", str(warmup), "--repeats", str(repeats), "--device", device, "--json", str(out)]
            try:
                main(argv, architecture=architecture)
            except Exception as error:  # noqa: BLE001 - recorded, and the next configuration runs
                oom = isinstance(error, torch.cuda.OutOfMemoryError)
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                text = f"out of memory: {message}" if oom else f"{type(error).__name__}: {message}"
                if not oom:
                    traceback.print_exc()
                record = {"model": name, "task": task, "mode": mode, "size": size, "batch": batch, "device": device}
                save_records([{**record, "error": text}], out)
                print(f"{name} {task}/{mode}/{size}: {text}")
            finally:
                if mode == "compile":
                    torch._dynamo.reset()
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
        results[name] = json.loads(out.read_text())
        print(f"{name}: {time.perf_counter() - start:.0f} s -> {out}")
    return results


def suite_from_env() -> int:
    """``benchmarks/gpu.sh``: :func:`suite` with its settings from the environment: ``MODELS`` ("pip garnet"),
    ``DEVICE`` (cuda), ``SIZE`` (both sizes) or ``TRAIN_SIZE`` (256) / ``FORWARD_SIZE`` (512), ``BATCH`` (8),
    ``WARMUP`` (3), ``REPEATS`` (10), ``MODES`` ("bf16 eager": no compile), ``SECONDS_PER_MODEL`` (none),
    ``OUT`` (benchmarks), ``NET_KWARGS`` (JSON {model: {argument: value}}). Exit status 1 when a run failed
    other than out of memory."""
    import os

    env = os.environ.get
    size = env("SIZE")
    results = suite(
        models=env("MODELS", "").split() or None,
        device=env("DEVICE", "cuda"),
        train_size=int(env("TRAIN_SIZE") or size or 256),
        forward_size=int(env("FORWARD_SIZE") or size or 512),
        batch=int(env("BATCH", 8)),
        warmup=int(env("WARMUP", 3)),
        repeats=int(env("REPEATS", 10)),
        modes=env("MODES", "").split() or None,
        seconds_per_model=float(env("SECONDS_PER_MODEL")) if env("SECONDS_PER_MODEL") else None,
        out_dir=Path(env("OUT", "benchmarks")),
        net_kwargs=json.loads(env("NET_KWARGS") or "{}"),
    )
    failed = [
        f"{r['model']} {r['task']}/{r['mode']}: {r['error']}"
        for records in results.values()
        for r in records
        if "error" in r and not r["error"].startswith("out of memory")
    ]
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


def _save_state(model: torch.nn.Module) -> Path:
    """The reference's state_dict in a temporary file, for ``zoo.load_weights``."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "reference.pth"
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    main()
