"""What the Hydra commands (train, eval) share: their entry (:func:`hydra_command`), the profile choice, config
resolvers, the config tree, instantiating config groups (callbacks, loggers, scorers), and turning user errors
into one clear message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError

log = logging.getLogger("rezoo")
PROFILES = ("quick", "full", "auto")
USER_ERROR_EXIT = 2


def auto_precision(accelerator: str = "auto") -> str:
    """bf16-mixed on GPUs with bf16, 16-mixed on older GPUs, 32 on CPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value of ``key=...`` (also ``+key=``/``++key=``) among Hydra overrides, if given."""
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+") == key:
            return value
    return None


def resolve_profile(overrides: Sequence[str], cuda_available: bool | None = None) -> tuple[list[str], str, str]:
    """Resolve ``profile=auto`` (also the default when no profile is given) before Hydra composes.

    Returns (overrides with an explicit ``profile=quick|full``, the profile, why it was chosen):
    ``auto`` is ``quick`` on a machine without a CUDA GPU, unless an ``experiment=`` recipe is given
    (recipes are the papers' settings and are never shrunk), and ``full`` otherwise.
    """
    given = _override_value(overrides, "profile")
    if given not in (None, *PROFILES):
        raise UserError(f"profile={given} is not a profile; use one of {', '.join(PROFILES)}")
    if given in ("quick", "full"):
        return list(overrides), given, "given on the command line"
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    experiment = _override_value(overrides, "experiment")
    if experiment not in (None, "null"):
        profile, reason = "full", f"auto: experiment={experiment} is a paper recipe"
    elif cuda:
        profile, reason = "full", "auto: a CUDA GPU is available"
    else:
        profile, reason = "quick", "auto: no CUDA GPU, so a CPU-sized run (profile=full for the paper's settings)"
    rest = [o for o in overrides if o.partition("=")[0].lstrip("+") != "profile"]
    return [*rest, f"profile={profile}"], profile, reason


def print_config_tree(
    cfg: DictConfig, order: Sequence[str] = ("model_name", "profile", "data", "model", "trainer", "callbacks", "logger")
) -> None:
    """Print the composed config as a rich tree, the main groups first (lightning-hydra-template style)."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order and k != "hydra"]
    for key in keys:
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        tree.add(str(key), style="bold").add(
            rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default")
        )
    rich.print(tree)


def instantiate_named(group: DictConfig | dict[str, Any] | None) -> dict[str, Any]:
    """Instantiate every entry with a ``_target_`` in a config group (callbacks, logger, scorers): name -> object."""
    from hydra.utils import instantiate

    if not group:
        return {}
    return {
        str(name): instantiate(node)
        for name, node in group.items()
        if isinstance(node, DictConfig) and "_target_" in node
    }


def instantiate_group(group: DictConfig | dict[str, Any] | None) -> list[Any]:
    """The objects of :func:`instantiate_named`, in order (a Trainer's callbacks and loggers)."""
    return list(instantiate_named(group).values())


def find_user_error(error: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``error``: itself, or its cause (Hydra's ``instantiate`` wraps
    what a target raised in an ``InstantiationException`` whose message is the error's repr)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a user error's message alone (line breaks kept), without a traceback, and exit with 2."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - anything else is re-raised unchanged
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None


def hydra_command(task: Callable[[DictConfig], Any], config_name: str, argv: Sequence[str] | None, prog: str) -> Any:
    """The entry of ``rezoo train`` and ``rezoo eval``: resolve the profile of the command line ``argv`` (default:
    ``sys.argv[1:]``), then run ``task`` on the config ``config_name`` composed from it (:func:`run_hydra`)."""
    overrides, profile, reason = resolve_profile(sys.argv[1:] if argv is None else argv)

    def logged_task(cfg: DictConfig) -> Any:
        log.info("profile=%s (%s)", profile, reason)
        return task(cfg)

    return run_hydra(logged_task, config_name, overrides, prog)


def run_hydra(task: Callable[[DictConfig], Any], config_name: str, overrides: Sequence[str], prog: str) -> Any:
    """Run ``task`` under Hydra with ``config_name`` (also the command's name) from the package's configs
    and these command-line overrides (Hydra's own flags such as ``-m``, ``--cfg job`` and
    ``hydra.run.dir=`` work too).

    Hydra reads ``sys.argv``; once it has, ``sys.argv`` is set to a command line that starts this run
    again the way it was started (``tools/train.py ...``, ``rezoo train ...``, ``python -m rezoo.cli
    train ...``), because Lightning's DDP launcher starts the other processes from it.
    """
    import hydra

    config_dir = str(Path(__file__).resolve().parent / "configs")
    job_name = [] if any(o.startswith("hydra.job.name=") for o in overrides) else [f"hydra.job.name={config_name}"]
    # Hydra's parser takes the overrides as one run of positionals: put them before its flags (``--cfg job``)
    settings = [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))]
    arguments = [*settings, *job_name, *[o for o in overrides if o not in settings]]
    original = list(sys.argv)
    command_word = [config_name] if original[1:2] == [config_name] else []  # the rezoo script, not tools/<command>.py
    result: dict[str, Any] = {}

    @hydra.main(version_base="1.3", config_path=config_dir, config_name=config_name)
    def entry(cfg: DictConfig) -> Any:
        sys.argv = [original[0], *command_word, *arguments]
        with user_errors():
            result["value"] = task(cfg)
        return result["value"]

    register_resolvers()
    sys.argv = [prog, *arguments]
    try:
        entry()
    finally:
        sys.argv = original
    return result.get("value")
