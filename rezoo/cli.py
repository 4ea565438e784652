"""``rezoo <command> [arguments]``: one console script for every tool.

    rezoo list [PATTERN] [--pretrained]
    rezoo train zoo=deeperaser                       # Hydra overrides, as tools/train.py
    rezoo eval zoo=pip data=allinone data.root=... checkpoint=...
    rezoo infer --model deeperaser --input photo.jpg --mask mask.png --out results/
    rezoo score --pred out/ --gt gt/ --protocol erasenet
    rezoo export run/checkpoints/last.ckpt --out release/ [--format onnx]
    rezoo bench --model deeperaser --size 256
    rezoo demo --model deeperaser --weights scut_enstext --port 7860

``rezoo <command> --help`` describes each. Mistakes in what was given (a wrong path, layout, file,
weights or download) end with one message and exit status 2, without a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from zoo.errors import UnverifiedWeightsWarning

_python_format_warning = warnings.formatwarning

COMMANDS = {
    "train": ("rezoo.train", "train a model (Hydra overrides)"),
    "eval": ("rezoo.eval", "evaluate weights on a test split (Hydra overrides)"),
    "infer": ("rezoo.infer", "run a model on images"),
    "score": ("rezoo.score", "score a folder of outputs against ground truth"),
    "export": ("rezoo.export", "export a checkpoint as a release file (safetensors) or an ONNX graph"),
    "bench": ("rezoo.bench", "time a model (and the official code) and measure its memory"),
    "demo": ("rezoo.demo", 'try a model in the browser (Gradio; pip install -e ".[demo]")'),
    "list": ("rezoo.cli", "list the registered models"),
}


def usage() -> str:
    lines = ["usage: rezoo <command> [arguments]", "", "commands:"]
    lines += [f"  {name:<8}{summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines + ["", "rezoo <command> --help for a command's arguments; rezoo --version"])


def list_main(argv: Sequence[str] | None = None, prog: str = "rezoo list") -> list[dict[str, Any]]:
    """Print a table of the registered models: name, task, inputs, scale, params, ONNX export, weight tags; then
    why the models that cannot be exported to ONNX cannot."""
    import argparse

    from rich.console import Console
    from rich.table import Table

    import zoo

    parser = argparse.ArgumentParser(prog=prog, description="List the registered models.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern")
    parser.add_argument("--pretrained", action="store_true", help="only models with weights in the manifest")
    args = parser.parse_args(argv)
    infos = [zoo.model_info(name) for name in zoo.list_models(args.pattern, pretrained=args.pretrained)]
    table = Table(title=f"rezoo {zoo.__version__}: {len(infos)} models")
    for column in ("name", "task", "inputs", "scale", "params", "onnx", "weights"):
        table.add_column(column, justify="right" if column in ("scale", "params") else "left")
    for info in infos:
        inputs = ", ".join(f"{n}?" if n in info.optional else n for n in info.inputs)
        tags = ", ".join(f"{t}*" if t == info.default_tag else t for t in info.tags) or "-"
        table.add_row(
            info.name,
            info.task,
            inputs,
            f"{info.scale}x",
            f"{info.params:,}",
            "yes" if info.onnx else "no",
            tags,
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    console.print(
        "input?: optional; tag*: the default weights (pretrained=True); onnx: rezoo export --format onnx", markup=False
    )
    for info in infos:
        if not info.onnx:
            console.print(f"no onnx: {info.name}: {info.onnx_note or 'not supported'}", markup=False, soft_wrap=True)
    return infos


def main(argv: Sequence[str] | None = None) -> None:
    """The console script (its return value would become the exit status, so it returns nothing)."""
    run(argv)


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Our own warnings as one ``warning:`` line; everyone else's as Python prints them."""
    if issubclass(category, UnverifiedWeightsWarning):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def run(argv: Sequence[str] | None = None) -> Any:
    """Run a command and return its result (the tests call this)."""
    from rezoo.runner import user_errors

    warnings.formatwarning = _format_warning

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return None
    if argv[0] == "--version":
        import zoo

        print(f"rezoo {zoo.__version__}")
        return None
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rezoo: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    with user_errors():
        if command == "list":
            return list_main(rest)
        module = importlib.import_module(COMMANDS[command][0])
        return module.main(rest, prog=f"rezoo {command}")


def tool(command: str) -> None:
    """Entry of the ``tools/<command>.py`` wrappers: ``rezoo <command>`` with the script's arguments."""
    main([command, *sys.argv[1:]])


if __name__ == "__main__":
    main()
