"""Export a checkpoint as a release file: safetensors weights (default) or an ONNX graph.

    rezoo export outputs/deeperaser/<run>/checkpoints/last.ckpt --out release/ [--tag scut_enstext] [--no-ema]
    rezoo export WEIGHTS --format onnx --out release/ [--model NAME] [--tag TAG]
    rezoo export TAG --model NAME --format onnx --out release/

``--format safetensors`` (the default) takes a Lightning checkpoint and writes
``<model>-<tag>-<sha256[:8]>.safetensors`` (generator weights only, EMA when present; the
architecture kwargs in the file's metadata) and a sidecar ``.json`` with model, tag, kwargs and the
full sha256. ``zoo.create_model(model, pretrained=<file>)`` rebuilds the network bit for bit.

``--format onnx`` takes a weights file (Lightning ``.ckpt``, our ``.safetensors``, an official
release) or a manifest tag (with ``--model``) and writes ``<model>-<tag>.onnx``: the eval forward in
fp32 with the model's conditions as further inputs and dynamic batch, height and width. The sidecar
``.json`` records the inputs and outputs (shapes with symbolic dimensions, dtypes, value ranges), the
smallest sizes the graph was traced for, the opset, the exporter, and the largest difference between
onnxruntime and PyTorch measured right after export at 97x131 and 64x80 (the export fails above 1e-4).
Needs ``pip install -e ".[export]"``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import zoo
from rezoo.flags import check_output_dir
from zoo.checkpoints import SAFETENSORS_METADATA_KEY, load_state_dict_strict, read_checkpoint
from zoo.errors import DownloadError, InputError, UserError, WeightsError, require_extra
from zoo.factory import build_model
from zoo.hub import LOCAL_WEIGHTS, sha256_file
from zoo.manifest import manifest_entry

FORMATS = ("safetensors", "onnx")
ONNX_EXTRA = 'pip install -e ".[export]"'
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted
CHECK_SIZES = ((97, 131), (64, 80))  # (H, W) checked after export: pads differ from each other and from EXAMPLE_SIZE's
EXAMPLE_SIZE = (2, 67, 91)  # (B, H, W) the graph is traced at (batch 2: torch.export specialises sizes 0 and 1)


class ExportError(UserError, RuntimeError):
    """A model that cannot be exported, or an export whose result differs from PyTorch."""


def _usual_permissions(path: Path) -> None:
    """Give ``path`` (written through a private temporary file, mode 0600) the mode a new file gets under the
    umask, like the JSON beside it."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def export(
    checkpoint: Path, out_dir: Path, tag: str = "custom", use_ema: bool = True, model_name: str | None = None
) -> Path:
    ckpt = read_checkpoint(checkpoint, use_ema=use_ema)
    name = model_name or ckpt.model_name
    if name is None:
        raise WeightsError(f"{checkpoint} does not say which model it holds; pass --model <name>")
    load_state_dict_strict(
        zoo.create_model(name, **ckpt.model_kwargs), ckpt.state_dict, str(checkpoint)
    )  # a mismatch is a WeightsError
    metadata = {SAFETENSORS_METADATA_KEY: json.dumps({"model": name, "tag": tag, "kwargs": ckpt.model_kwargs})}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".safetensors", delete=False) as handle:
        tmp = Path(handle.name)
    save_file({k: v.contiguous() for k, v in ckpt.state_dict.items()}, str(tmp), metadata=metadata)
    digest = sha256_file(tmp)
    target = out_dir / f"{name}-{tag}-{digest[:8]}.safetensors"
    _usual_permissions(tmp)
    tmp.replace(target)
    sidecar = {
        "model": name,
        "tag": tag,
        "kwargs": ckpt.model_kwargs,
        "sha256": digest,
        "source": str(checkpoint),
        "format": ckpt.format,
    }
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return target


# --------------------------------------------------------------------------------------------- ONNX
def require_onnx() -> dict[str, str]:
    """The versions of onnx, onnxruntime and onnxscript; a one-line :class:`MissingExtraError` without them."""
    return {package: require_extra(package, "export", "ONNX export").__version__ for package in ONNX_PACKAGES}


@dataclass
class TensorSpec:
    """One input or output of the exported graph, as the sidecar records it."""

    name: str
    shape: list[int | str]  # symbolic dimensions by name
    dtype: str
    range: str


def example_args(
    name: str, inputs: list[TensorSpec], batch: int, height: int, width: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Random values of the graph's inputs from ``zoo.example_inputs`` (a degradation class as its one-hot
    weights, which the graph takes)."""
    image, conditions = zoo.example_inputs(name, batch, (height, width), generator=generator)
    values = [image]
    for spec in inputs[1:]:
        value = conditions[spec.name]
        if spec.name == "degradation":
            value = torch.nn.functional.one_hot(value % spec.shape[1], spec.shape[1]).float()
        values.append(value)
    return tuple(values)


class EvalForward(torch.nn.Module):
    """The model's eval forward with its conditions as positional inputs (what the ONNX graph takes)."""

    def __init__(self, model: torch.nn.Module, conditions: tuple[str, ...]):
        super().__init__()
        self.model, self.conditions = model, conditions

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {self.conditions[0]: condition} if self.conditions else {}
        return self.model(image, **kwargs)


def onnx_signature(name: str, arguments: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec], list[str]]:
    """(inputs, outputs, notes) of the exported graph of model ``name`` built with ``arguments``, following
    ``zoo.model_info`` (its defaults, or the architecture arguments the weights record)."""
    info = zoo.model_info(name)
    notes = []
    if info.recognizer:
        channels = arguments.get("in_channels", info.input_channels)
        alphabet = arguments.get("alphabet", info.alphabet)
        inputs = [
            TensorSpec(
                "image",
                ["batch", channels, 32, "width"],
                "float32",
                "[0,1] grey (luma 0.299R+0.587G+0.114B, no normalisation), 32 px high",
            )
        ]
        outputs = [
            TensorSpec(
                "scores",
                ["steps", "batch", len(alphabet) + 1],
                "float32",
                "unnormalised class scores per step (steps = width/4 + 1); "
                f"class 0 = CTC blank, class i+1 = {alphabet!r}[i]",
            )
        ]
        return inputs, outputs, notes
    inputs = [TensorSpec("image", ["batch", 3, "height", "width"], "float32", "[0,1] RGB")]
    for condition in info.conditions:
        if condition == "mask" and condition in info.optional:
            notes.append(
                "the mask is optional in PyTorch: the graph is the image-only forward "
                "(the network predicts its own text region; "
                "to use a known mask, composite outside the graph: output * mask + image * (1 - mask))"
            )
        elif condition == "mask":
            inputs.append(TensorSpec("mask", ["batch", 1, "height", "width"], "float32", "{0,1}, 1 = text"))
        elif condition == "degradation":
            names = info.condition_values["degradation"]
            classes = arguments.get("classes", len(names))
            kinds = ", ".join(f"{i} {kind}" for i, kind in enumerate(names[:classes]))
            inputs.append(
                TensorSpec(
                    "degradation",
                    ["batch", classes],
                    "float32",
                    f"class weights: the one-hot of the degradation ({kinds}); "
                    "the mean of two one-hots for a mixed one",
                )
            )
            notes.append(
                "degradation is given as (batch, classes) float weights, not as a class index: what PyTorch's "
                "`degradation=` turns an index or a pair of indices into"
            )
        else:
            raise ExportError(f"{name}: no ONNX input representation for the condition {condition!r}")
    scale = info.scale
    size = ["height", "width"] if scale == 1 else [f"height*{scale}", f"width*{scale}"]
    outputs = [TensorSpec("output", ["batch", 3, *size], "float32", "[0,1] RGB")]
    return inputs, outputs, notes


def _uses_rnn(model: torch.nn.Module) -> bool:
    return any(isinstance(module, torch.nn.RNNBase) for module in model.modules())


def _smallest_sizes(exported: torch.export.ExportedProgram, inputs: list[TensorSpec]) -> dict[str, int]:
    """The smallest size of every symbolic dimension for which ``torch.export`` traced the graph (e.g. a side
    of at least the pad multiple, which reflect padding needs); batch 1 is checked after export."""
    smallest: dict[str, int] = {"batch": 1}
    names = set(exported.graph_signature.user_inputs)
    users = [node for node in exported.graph.nodes if node.op == "placeholder" and node.name in names]
    for node, spec in zip(users, inputs):
        for size, dim in zip(node.meta["val"].shape, spec.shape):
            if isinstance(dim, str) and dim != "batch" and isinstance(size, torch.SymInt):
                bounds = exported.range_constraints.get(size.node.expr)
                lower = max(int(bounds.lower), 1) if bounds is not None else 1
                smallest[dim] = max(smallest.get(dim, 1), lower)
    return smallest


def _export_graph(
    wrapper: EvalForward, inputs: list[TensorSpec], outputs: list[TensorSpec], args: tuple, path: Path
) -> tuple[str, dict[str, int] | None]:
    """Export ``wrapper`` at ``args`` to ``path`` with dynamic named dimensions; returns the exporter used and
    the smallest sizes of the dimensions (``None`` where the exporter does not say)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if _uses_rnn(wrapper):
            # the dynamo exporter's LSTM decomposition fixes the sequence length;
            # TorchScript's maps nn.LSTM to ONNX LSTM
            axes = {
                spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in inputs + outputs
            }
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=[s.name for s in inputs],
                output_names=[s.name for s in outputs],
                dynamic_axes=axes,
            )
            return "torch.onnx.export(dynamo=False): the TorchScript exporter, dynamic_axes", None
        dynamic = torch.export.Dim.DYNAMIC
        shapes = tuple({i: dynamic for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in inputs)
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            verbose=False,
            dynamic_shapes=shapes,
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
        )
        program.save(str(path), external_data=False)
    return "torch.onnx.export(dynamo=True): torch.export (non-strict, Dim.DYNAMIC) and onnxscript", _smallest_sizes(
        program.exported_program, inputs
    )


def _name_dimensions(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> int:
    """Give the graph's symbolic input/output dimensions our names (batch, height, ...); returns the opset."""
    import onnx

    model = onnx.load(str(path))
    for values, specs in ((model.graph.input, inputs), (model.graph.output, outputs)):
        for value, spec in zip(values, specs):
            for dim, want in zip(value.type.tensor_type.shape.dim, spec.shape):
                if isinstance(want, str):
                    dim.dim_param = want
    onnx.save(model, str(path))
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def _compare(name: str, path: Path, wrapper: EvalForward, inputs: list[TensorSpec], height: int, width: int) -> float:
    """max |onnxruntime - PyTorch| on random inputs of batch 1 at ``height`` x ``width``."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    values = example_args(name, inputs, 1, height, width, generator)
    with torch.no_grad():
        expected = wrapper(*values).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {spec.name: value.numpy() for spec, value in zip(inputs, values)})[0]
    if actual.shape != expected.shape:
        raise ExportError(f"the ONNX output at {height}x{width} is {actual.shape}, PyTorch's {expected.shape}")
    return float(abs(actual - expected).max())


def export_onnx(
    source: str, out_dir: Path, tag: str | None = None, use_ema: bool = True, model_name: str | None = None
) -> Path:
    """Export the eval forward of the weights ``source`` (a file, or a manifest tag with ``model_name``) to
    ``out_dir/<model>-<tag>.onnx`` plus a sidecar ``.json``; checks onnxruntime against PyTorch."""
    versions = require_onnx()
    if model_name is not None:
        name = model_name
        path, ckpt = zoo.read_pretrained(name, source, use_ema=use_ema)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"{source} is not a file; to export weights of the manifest, pass the model too: "
                f"--model <name> {source}"
            )
        ckpt = read_checkpoint(path, use_ema=use_ema)
        name = ckpt.model_name
        if name is None:
            raise WeightsError(f"{path} does not say which model it holds; pass --model <name>")
    tag = tag or (source if manifest_entry(name, source) is not None else "custom")
    info = zoo.model_info(name)
    if not info.onnx:
        raise ExportError(f"{name} cannot be exported to ONNX: {info.onnx_note or 'not supported'}")
    model = build_model(name, ckpt, str(path)).float().eval()
    inputs, outputs, notes = onnx_signature(name, ckpt.model_kwargs)
    wrapper = EvalForward(model, tuple(spec.name for spec in inputs[1:])).eval()
    generator = torch.Generator().manual_seed(0)
    batch, height, width = EXAMPLE_SIZE
    recognition = info.task == "recognition"
    checks = [(32, w) for _, w in CHECK_SIZES] if recognition else list(CHECK_SIZES)
    args = example_args(name, inputs, batch, height, width, generator)

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{tag}.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".onnx-") as tmp:
        tmp_path = Path(tmp) / target.name
        with torch.no_grad():
            exporter, smallest = _export_graph(wrapper, inputs, outputs, args, tmp_path)
        opset = _name_dimensions(tmp_path, inputs, outputs)
        diffs = {f"{h}x{w}": _compare(name, tmp_path, wrapper, inputs, h, w) for h, w in checks}
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > TOLERANCE:
            raise ExportError(
                f"{name}: the ONNX graph's output differs from PyTorch's by {diffs[worst]:.2e} > {TOLERANCE:g} at "
                f"{worst} (exporter: {exporter}); nothing written"
            )
        _usual_permissions(tmp_path)
        tmp_path.replace(target)
    sidecar = {
        "model": name,
        "tag": tag,
        "source": str(source),
        "source_file": str(path),
        "source_format": ckpt.format,
        "kwargs": ckpt.model_kwargs,
        "format": "onnx",
        "opset": opset,
        "exporter": exporter,
        "torch": torch.__version__,
        **versions,
        "inputs": [asdict(spec) for spec in inputs],
        "outputs": [asdict(spec) for spec in outputs],
        "smallest_sizes": smallest,
        "notes": notes,
        "max_abs_diff": diffs[next(iter(diffs))],
        "max_abs_diff_by_size": diffs,
        "tolerance": TOLERANCE,
        "sha256": sha256_file(target),
    }
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False))
    return target


def main(argv: list[str] | None = None, prog: str = "rezoo export") -> Path:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoint",
        metavar="CKPT|TAG",
        help="a checkpoint or weights file; for --format onnx also a manifest tag (with --model)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="safetensors",
        help="safetensors weights (default) or an ONNX graph of the eval forward",
    )
    parser.add_argument(
        "--tag",
        default=None,
        help="weights tag used in the file name (no dots or dashes; default: custom, or the manifest tag)",
    )
    parser.add_argument("--model", default=None, help="model name when the checkpoint does not record it")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    args = parser.parse_args(argv)
    if args.tag is not None and any(c in args.tag for c in ".-"):
        parser.error("--tag must not contain '.' or '-' (they break hash parsing of the file name)")
    check_output_dir(args.out)
    try:
        if args.format == "onnx":
            target = export_onnx(args.checkpoint, args.out, args.tag, not args.no_ema, args.model)
        else:
            if not Path(args.checkpoint).expanduser().exists():
                raise InputError(
                    f"{args.checkpoint} is not a file: give a checkpoint or weights file (a manifest tag only "
                    "with --format onnx --model <name>)"
                )
            target = export(Path(args.checkpoint), args.out, args.tag or "custom", not args.no_ema, args.model)
    except DownloadError as error:  # its way out in this command's words (not infer's --weights)
        raise DownloadError(str(error).replace(LOCAL_WEIGHTS, f"{prog} <file> --format onnx")) from None
    print(target)
    return target


if __name__ == "__main__":
    main()
