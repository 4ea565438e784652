"""Speed and memory benchmark of a zoo model.

    python tools/bench.py --model deeperaser --size 256 --batch 1 --mode eager --task forward
    python tools/bench.py --model deeperaser --size 256 --mode channels_last --out benchmarks/deeperaser_cpu.json
    python tools/bench.py --model deeperaser --size 256 --reference /path/to/DeepEraser/model.py:DeepEraser \
        --reference-kwargs '{"test_mode": true}' --compare   # ours vs the official code, interleaved
    python tools/bench.py --model garnet --size 512 --reference /path/to/garnet/CODE/model.py:GaRNet \
        --reference-init '{"in_channels": 3}' --reference-input concat --compare
    python tools/bench.py --model ste --size 512 --reference /path/to/STE/models/src/erase/sa_gan.py:STRnet2 --reference-input image --compare

Modes: ``eager`` (fp32), ``channels_last`` (fp32, NHWC), ``bf16`` (bf16 autocast), ``compile``
(torch.compile; for ``forward`` with Inductor's weight freezing, which constant-folds the weights and
pre-packs them for oneDNN on CPU — valid because inference does not change them). Tasks: ``forward`` (eval, no grad) and ``train`` (forward + backward + AdamW step of the
model's training loss on its forward_train output when it has one). Prints and appends JSON records.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import zoo  # noqa: E402

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


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS of the process (Linux: KiB)


REFERENCE_INPUTS = {"image_mask": lambda net: net, "concat": ConcatInput, "image": ImageOnly}


def make_inputs(batch: int, size: int, device: str, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=generator).to(device)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.8).float().to(device)
    if mode == "channels_last":
        image, mask = image.contiguous(memory_format=torch.channels_last), mask.contiguous(memory_format=torch.channels_last)
    return image, mask


def make_step(model: torch.nn.Module, args: argparse.Namespace, call_kwargs: dict | None = None) -> Callable[[], None]:
    """One timed unit of work (a forward, or a training step) of ``model`` in ``args.mode``."""
    device, mode = args.device, args.mode
    model = model.to(device)
    if mode == "channels_last":
        for tensor in [*model.parameters(), *model.buffers()]:  # 4-D tensors only (prompts, temperatures are not images)
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    call_kwargs = call_kwargs or {}
    image, mask = make_inputs(args.batch, args.size, device, mode)
    if getattr(model, "input_kind", "mask") == "degradation":  # restoration models take class labels, not a mask
        mask = torch.arange(args.batch, device=device) % 5
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=mode == "bf16")
    if args.task == "forward":
        model.eval()
        if mode == "compile":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        runner = torch.compile(model) if mode == "compile" else model

        def step() -> None:
            with torch.no_grad(), autocast:
                runner(image, mask, **call_kwargs)

        return step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    forward = getattr(model, "forward_train", model.forward)
    runner = torch.compile(forward) if mode == "compile" else forward

    def train_step() -> None:
        with autocast:
            out = runner(image, mask)
            outputs = out if isinstance(out, (list, tuple)) else [out]
            loss = sum(o.float().abs().mean() for o in outputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


def time_steps(steps: dict[str, Callable[[], None]], args: argparse.Namespace) -> dict[str, dict]:
    """Warm up, then time every step ``args.repeats`` times; several steps are interleaved (a, b, a, b,
    ...) so that drift in the machine's speed affects them alike."""
    device = args.device

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for step in steps.values():
        for _ in range(args.warmup):
            step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    results = {}
    for name, values in times.items():
        median = statistics.median(values)
        results[name] = {
            "seconds_per_batch": median, "images_per_s": args.batch / median, "peak_memory_mb": round(peak_memory_mb(device), 1),
            "times": [round(t, 4) for t in values], "interleaved_with": [n for n in steps if n != name],
        }
    return results


def markdown_table(records: list[dict]) -> str:
    """A README table of recorded benchmark results."""
    lines = [
        "| model | implementation | task | mode | size | batch | device | threads | img/s | s/batch | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['implementation']} | {r['task']} | {r['mode']} | {r['size']} | {r['batch']} | "
            f"{r.get('gpu') or r['device']} | {r['threads']} | {r['images_per_s']:.3g} | {r['seconds_per_batch']:.3g} | {r['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=None, help="print a markdown table of a results file and exit")
    parser.add_argument("--model", choices=zoo.list_models())
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="eager")
    parser.add_argument("--task", choices=("forward", "train"), default="forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--reference", default=None, help="file.py:Class of another implementation to time instead")
    parser.add_argument("--reference-kwargs", default="{}", help="JSON kwargs for the reference forward call")
    parser.add_argument("--model-kwargs", default="{}", help='JSON architecture kwargs, e.g. {"inference_size": null}')
    parser.add_argument("--reference-init", default="{}", help="JSON kwargs for the reference constructor")
    parser.add_argument("--reference-input", choices=tuple(REFERENCE_INPUTS), default="image_mask",
                        help="how the reference takes its input: (image, mask); one tensor [2·image − 1, mask] (GaRNet/EnsNet style); the image alone (STE)")
    parser.add_argument("--compare", action="store_true", help="with --reference: time ours too, interleaved, same weights")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON record to this file (a JSON list)")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return {}
    if not args.model:
        parser.error("--model is required")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = {}
    if args.reference:
        reference = load_reference(args.reference, json.loads(args.reference_init))
        steps["reference"] = make_step(REFERENCE_INPUTS[args.reference_input](reference), args, json.loads(args.reference_kwargs))
    if not args.reference or args.compare:
        ours = zoo.create_model(args.model, **json.loads(args.model_kwargs))
        if args.reference:  # same weights as the reference (its key names are the official ones)
            zoo.load_weights(ours, args.model, _save_state(reference), progress=False)
        steps = {"rezoo": make_step(ours, args), **steps}
    common = {
        "model": args.model, "reference": args.reference, "size": args.size, "batch": args.batch,
        "mode": args.mode, "task": args.task, "device": args.device, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
    }
    records = [{"implementation": name, **common, **result} for name, result in time_steps(steps, args).items()]
    for record in records:
        print(json.dumps(record))
    if args.out:
        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(previous + records, indent=1))
    return records[0] if len(records) == 1 else records


def _save_state(model: torch.nn.Module) -> Path:
    """The reference's state_dict in a temporary file, for ``zoo.load_weights``."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "reference.pth"
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    main()
