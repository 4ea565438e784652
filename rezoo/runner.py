"""What the Hydra commands (train, eval) share: their entry (:func:`hydra_command`), the profile choice, config
resolvers, the config tree, instantiating config groups (callbacks, loggers, scorers), and turning user errors
into one clear message."""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import shutil
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from rezoo.flags import check_output_dir
from zoo.errors import InputError, UserError

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


# ------------------------------------------------------------------------------------ config checks
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
OWN_PACKAGES = ("zoo.", "datamodules.", "rezoo.")  # their ``**kwargs`` go to the base class's ``__init__``


def target_arguments(target: str) -> list[str] | None:
    """The keyword arguments ``target`` (a ``_target_``) takes, from its signature; None when it takes any
    (``**kwargs`` of a third-party class) or cannot be imported (``instantiate`` then says why). A class of
    this package that takes ``**kwargs`` hands them to its base class: the base's arguments count too."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        chain = [obj, *(c for c in obj.__mro__[1:] if "__init__" in c.__dict__)] if inspect.isclass(obj) else [obj]
    except Exception:  # noqa: BLE001 - not importable: instantiate reports it
        return None
    names: list[str] = []
    for item in chain:
        try:
            parameters = inspect.signature(item.__init__ if item is not obj else item).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return [n for n in dict.fromkeys(names) if n != "self"]
        if item is object or not target.startswith(OWN_PACKAGES):
            return None
    return None


def unknown_argument_message(key: str, target: str, accepted: Sequence[str]) -> str:
    """The one-line error of ``key`` (``trainer.max_stepz``), which ``target`` does not take."""
    name = key.rpartition(".")[2]
    close = difflib.get_close_matches(name, accepted, n=1)
    hint = f" (did you mean {key.rpartition('.')[0] + '.' if '.' in key else ''}{close[0]}?)" if close else ""
    return f"{key}: {target} takes no argument {name!r}{hint}; it takes {', '.join(accepted)}"


def check_targets(cfg: Any, path: str = "") -> None:
    """Every key of a config node with a ``_target_`` (Trainer, datamodule, model, callbacks, ...) is an argument
    of that target; else an :class:`InputError` naming the key and the arguments the target takes (rather than
    the ``TypeError`` of instantiating it, after the run has started)."""
    if isinstance(cfg, ListConfig):
        for index, item in enumerate(cfg):
            if isinstance(item, (DictConfig, ListConfig)):
                check_targets(item, f"{path}[{index}]")
        return
    if not isinstance(cfg, DictConfig):
        return
    target = cfg.get("_target_") if "_target_" in cfg else None
    if isinstance(target, str):
        accepted = target_arguments(target)
        if accepted is not None:
            for key in cfg:
                if key not in HYDRA_KEYS and key not in accepted:
                    raise InputError(unknown_argument_message(f"{path}{key}", target, accepted))
    for key in cfg:
        if path == "" and key == "hydra":
            continue
        node = cfg._get_node(key)
        if isinstance(node, (DictConfig, ListConfig)):
            check_targets(node, f"{path}{key}.")


def check_trainer(cfg: DictConfig) -> None:
    """``trainer.accelerator`` there on this machine and ``trainer.precision`` not fp16 on a CPU, checked before
    anything is built."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise InputError(
            f"trainer.accelerator={accelerator}: this machine has no CUDA GPU (or torch was built without CUDA); "
            "use trainer.accelerator=cpu (or auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise InputError("trainer.accelerator=mps: MPS is not available on this machine; use trainer.accelerator=cpu")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    precision = str(trainer.get("precision", "32-true"))
    if on_cpu and precision in ("16", "16-mixed", "16-true"):
        raise InputError(
            f"trainer.precision={precision} on the CPU is emulated and tens of times slower: "
            "use trainer.precision=bf16-mixed or 32-true"
        )
    root = trainer.get("default_root_dir")
    if root is not None:
        check_output_dir(Path(str(root)), option="trainer.default_root_dir")


def missing_value(error: BaseException) -> UserError | None:
    """A mandatory config value (``???``) left out, as a one-line error saying what to give."""
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, MissingMandatoryValue):
        key = getattr(error, "full_key", None) or "a key"
        return InputError(f"{key} is required: give {key}=<value> on the command line")
    return None


# ------------------------------------------------------------------------------------- quiet logs
LIBRARY_NOISE = (  # (message regex, module) of warnings no user can act on
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # max_epochs=-1: the logging interval counts steps across epochs, so short epochs lose no logs
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\.pytorch\..*"),
)
LOG_NOISE = ("💡 Tip:", "Trainer already configured with model summary callbacks")  # Lightning's, not actionable


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LOG_NOISE)


def quiet_libraries() -> None:
    """Lightning's log lines once, through Hydra's handlers (console and the run's log file), without its tips;
    and the library warnings of :data:`LIBRARY_NOISE` filtered by message and module."""
    import lightning

    for message, module in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)
    root = logging.getLogger()
    own = getattr(lightning, "_console", None)  # lightning/__init__.py's "INFO: ..." handler on stderr
    if own is not None:
        logging.getLogger("lightning").removeHandler(own)
    if root.handlers:  # Hydra's job logging is set up: Lightning's loggers hand their records to it
        for name in ("lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            if not logger.propagate:
                for handler in list(logger.handlers):
                    if type(handler) is logging.StreamHandler:
                        logger.removeHandler(handler)
                logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


# ------------------------------------------------------------------------------------- the entry
def hydra_command(task: Callable[[DictConfig], Any], config_name: str, argv: Sequence[str] | None, prog: str) -> Any:
    """The entry of ``rezoo train`` and ``rezoo eval``: resolve the profile of the command line ``argv`` (default:
    ``sys.argv[1:]``), then run ``task`` on the config ``config_name`` composed from it (:func:`run_hydra`).
    Before anything is built: every key of a ``_target_`` node is an argument of its target, the trainer's
    accelerator and precision fit the machine and its folder can be written (:func:`check_targets`,
    :func:`check_trainer`)."""
    overrides, profile, reason = resolve_profile(sys.argv[1:] if argv is None else argv)

    def logged_task(cfg: DictConfig) -> Any:
        missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra."))
        if missing:
            raise InputError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: give "
                f"{' '.join(f'{key}=<value>' for key in missing)} on the command line"
            )
        check_targets(cfg)
        check_trainer(cfg)
        log.info("profile=%s (%s)", profile, reason)
        quiet_libraries()
        return task(cfg)

    return run_hydra(logged_task, config_name, overrides, prog)


def _run_folder_option(overrides: Sequence[str]) -> tuple[str, Path]:
    """The option naming the run folder (``hydra.run.dir``, ``hydra.sweep.dir`` with ``-m``) and the part of
    its path known before composing (up to the first interpolation; the default's is ``outputs``)."""
    multirun = any(o in ("-m", "--multirun") for o in overrides)
    option = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    value = _override_value(overrides, option)
    if value is None:
        return f"{option} (default multirun/... or outputs/...)", Path("multirun" if multirun else "outputs")
    parts = Path(value).parts
    known = parts[: next((i for i, part in enumerate(parts) if "${" in part), len(parts))]
    return option, Path(*known) if known else Path(".")


def _has_results(run_dir: Path) -> bool:
    """Whether a run folder holds what a run produced (checkpoints, samples, images, metrics), beyond
    Hydra's ``.hydra/`` and log file and the config and hyperparameters written at the start."""
    for name in ("checkpoints", "samples", "images"):
        if (run_dir / name).is_dir() and any(p.is_file() for p in (run_dir / name).rglob("*")):
            return True
    return any((run_dir / name).is_file() for name in ("metrics.json", "metrics.csv"))


def _remove_run_folder(run_dir: Path, base: Path, base_existed: bool) -> None:
    """Remove ``run_dir``, first closing the log files in it (Hydra's ``<job>.log``), and the folders above it
    that are left empty up to ``base`` (``outputs``), that one too when the run made it."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            filename = getattr(handler, "baseFilename", None)
            if filename and Path(filename).resolve().is_relative_to(run_dir.resolve()):
                logger.removeHandler(handler)
                handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    base = base.resolve()
    for parent in run_dir.resolve().parents:
        if not parent.is_relative_to(base) or (parent == base and base_existed):
            break
        if [p.name for p in parent.iterdir()] == ["multirun.yaml"]:  # a sweep that ran nothing
            (parent / "multirun.yaml").unlink()
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def _hydra_error(error: BaseException, config_dir: str, config_name: str, settings: Sequence[str]) -> UserError | None:
    """A mistake in the command line that Hydra found while composing (a config group option or a key that is
    not there, a malformed override), as one line: Hydra's own message without its search path; for a key that
    is not an argument of a ``_target_`` node (``trainer.max_stepz=3``), the arguments it takes instead of
    Hydra's advice to add the key with ``+`` (which would end in a ``TypeError``)."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(error, (HydraException, OmegaConfBaseException)):
        frames = traceback.extract_tb(error.__traceback__)
        if isinstance(error, ValueError) and frames and f"{os.sep}hydra{os.sep}" in frames[-1].filename:
            return InputError(str(error))  # a usage mistake Hydra finds in its flags (-m with --cfg)
        return None
    if isinstance(error, OverrideParseException):
        return InputError(f"{error.override}: {'; '.join(error.message.splitlines())}")
    if isinstance(error, MissingConfigException):
        text = str(error).split("\nConfig search path:")[0].split("\nSearch path:")[0]
        first, _, rest = text.partition("\n")
        options = [line.strip() for line in rest.splitlines() if line.startswith("\t")]
        heading = next((line.rstrip(":") for line in rest.splitlines() if line.startswith("Available options")), "")
        return InputError(f"{first}; {heading.lower()}: {', '.join(options)}" if options else first)
    cause = error.__cause__
    key = getattr(cause, "full_key", None)
    if isinstance(cause, OmegaConfBaseException) and key and "not in struct" in str(cause):
        parent, _, name = str(key).rpartition(".")
        target = _composed_target(config_dir, config_name, [s for s in settings if s.partition("=")[0] != key], parent)
        if target is not None:
            accepted = target_arguments(target)
            if accepted is not None and name in accepted:  # an argument the config does not set: Hydra's + adds it
                value = next((s.partition("=")[2] for s in settings if s.partition("=")[0] == key), "<value>")
                return InputError(f"{key} is not in the config, but {target} takes it: write +{key}={value}")
            if accepted is not None:
                return InputError(unknown_argument_message(str(key), target, accepted))
    first, *rest = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        first = f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    return InputError("; ".join([first, *(line[:1].lower() + line[1:] for line in rest)]))


def _composed_target(config_dir: str, config_name: str, overrides: Sequence[str], node: str) -> str | None:
    """The ``_target_`` of the config node ``node`` composed from ``overrides``, or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name, overrides=[o for o in overrides if not o.lstrip("+~").startswith("hydra.")])
        target = OmegaConf.select(cfg, f"{node}._target_" if node else "_target_")
    except Exception:  # noqa: BLE001 - no better message then: Hydra's own
        return None
    finally:
        GlobalHydra.instance().clear()
    return target if isinstance(target, str) else None


def run_hydra(task: Callable[[DictConfig], Any], config_name: str, overrides: Sequence[str], prog: str) -> Any:
    """Run ``task`` under Hydra with ``config_name`` (also the command's name) from the package's configs
    and these command-line overrides (Hydra's own flags such as ``-m``, ``--cfg job`` and
    ``hydra.run.dir=`` work too, in any position).

    Hydra reads ``sys.argv``; once it has, ``sys.argv`` is set to a command line that starts this run
    again the way it was started (``tools/train.py ...``, ``rezoo train ...``, ``python -m rezoo.cli
    train ...``), because Lightning's DDP launcher starts the other processes from it.

    Mistakes end with one line and exit status 2 (:func:`user_errors`): the run folder not writable (checked
    before Hydra writes anything), Hydra's composition errors (:func:`_hydra_error`), and what the task raises.
    A run that fails before producing anything (no checkpoint, sample or metrics) leaves no run folder behind.
    """
    import hydra
    from hydra.core.hydra_config import HydraConfig

    config_dir = str(Path(__file__).resolve().parent / "configs")
    job_name = [] if any(o.startswith("hydra.job.name=") for o in overrides) else [f"hydra.job.name={config_name}"]
    # Hydra's parser takes the overrides as one run of positionals: put them before its flags (``--cfg job``)
    settings = [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))]
    arguments = [*settings, *job_name, *[o for o in overrides if o not in settings]]
    original = list(sys.argv)
    command_word = [config_name] if original[1:2] == [config_name] else []  # the rezoo script, not tools/<command>.py
    result: dict[str, Any] = {}
    in_task = {"value": False}
    only_prints = any(
        o.split("=")[0] in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for o in overrides
    )
    option, folder = _run_folder_option(overrides)
    if not only_prints:
        with user_errors():
            check_output_dir(folder, option=option)
    folder_existed = folder.exists()
    existing = _override_value(overrides, "hydra.run.dir")
    reused = existing is not None and Path(existing).exists()  # a folder the user had: never removed

    @hydra.main(version_base="1.3", config_path=config_dir, config_name=config_name)
    def entry(cfg: DictConfig) -> Any:
        sys.argv = [original[0], *command_word, *arguments]
        in_task["value"] = True
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            with user_errors():
                try:
                    result["value"] = task(cfg)
                except Exception as error:
                    replacement = missing_value(error)
                    if replacement is None:
                        raise
                    raise replacement from None
        except (Exception, SystemExit):
            rank_zero = all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))
            if rank_zero and not reused and not _has_results(run_dir):
                _remove_run_folder(run_dir, folder, folder_existed)
            raise
        return result["value"]

    register_resolvers()
    sys.argv = [prog, *arguments]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors come here (not printed with its search path and exit 1)
    try:
        with user_errors():
            try:
                entry()
            except Exception as error:
                user_error = None if in_task["value"] else _hydra_error(error, config_dir, config_name, settings)
                if user_error is None:
                    raise
                raise user_error from None
    finally:
        sys.argv = original
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return result.get("value")
