"""The libraries' own output off the terminal: `quiet_libraries()` keeps a command's output to the
studio's own lines. Every command that loads a model, trains or opens an SSH connection calls it
first (before the libraries are imported), and so does the training process (`python -m training
run`). With `verbose=True` (`studio --verbose`, or STUDIO_VERBOSE=1) nothing is suppressed.

What it stops, and how:

Environment variables, set (overwritten) in quiet mode. The libraries read them when they are
imported, hence the call before; the processes the studio starts inherit them:
- HF_HUB_DISABLE_PROGRESS_BARS=1: huggingface_hub's download bars, and every transformers bar
  ("Loading weights", "Writing model shards", GGUF de-quantising): transformers follows the hub's
  switch when it is imported.
- HF_DATASETS_DISABLE_PROGRESS_BARS=1: datasets' map and filter bars ("Packing train dataset", TRL's
  tokenising).
- TQDM_DISABLE=1: any other library's tqdm bar (tqdm reads TQDM_* defaults when it is imported).
- TRANSFORMERS_VERBOSITY, DATASETS_VERBOSITY, HF_HUB_VERBOSITY=error: these three libraries' own
  stderr handlers print errors only (not "generation flags are not valid" and the like).
- STUDIO_VERBOSE=1 is set by a verbose call (never by a quiet one), so the training processes a
  `studio --verbose train` starts are verbose too.
For a library imported before the call, the same through its API: transformers.utils.logging
.disable_progress_bar, datasets.disable_progress_bars, huggingface_hub.utils.disable_progress_bars,
and the level of its logger.

Python logging: peft, trl, accelerate and bitsandbytes log to the root logger, whose last-resort
handler prints warnings on stderr; their loggers (and the three above) are set to ERROR. With
`log_file` (a path or a stream), every one of these libraries logs WARNING and above to that file
instead, and nothing of theirs reaches the terminal: `studio train --foreground` and the training
process use the run's train.log.

Warnings filters, by category and module (never all warnings): FutureWarning, DeprecationWarning
and PendingDeprecationWarning raised in transformers, peft, trl, torch, accelerate, datasets,
huggingface_hub or bitsandbytes ("`is_gradient_checkpointing` is deprecated", printed on every
load); cryptography's CryptographyDeprecationWarning raised in asyncssh (DSA, five of them when
asyncssh is imported).

The Trainer's log dicts: with `disable_tqdm` (the recipe sets it) the Trainer adds its
PrinterCallback, which print()s every log as a dict (`{'loss': '6.078', 'grad_norm': ...}`) on
stdout; no TrainingArguments option stops it. metrics.jsonl records the same values and the studio
prints its own lines, so `training.recipe.make_trainer` removes that callback unless `is_quiet()`
is false (verbose).

bitsandbytes' hub kernel: importing bitsandbytes (peft imports it whenever it is installed, 4-bit
or not) on a CPU with AVX512-BF16 calls `kernels.get_kernel("kernels-community/quantization-
bitsandbytes")`: a Hub download attempt on every run, and "Failed to load CPU gemm_4bit_forward from
kernels-community" on stderr when it fails. Neither package has a switch for it (HF_HUB_OFFLINE
would also stop the studio's own model downloads), so while `bitsandbytes.backends.cpu.ops` runs its
module code, `kernels` reads as not installed: bitsandbytes then uses its own C kernel for 4-bit
matmuls on the CPU, as on CPUs without AVX512-BF16. This applies in verbose mode too: it stops a
network attempt, not output.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

VERBOSE_ENV = "STUDIO_VERBOSE"
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
}
WARNING_LIBRARIES = ("transformers", "peft", "trl", "torch", "accelerate", "datasets", "huggingface_hub",
                     "bitsandbytes")
LOGGING_LIBRARIES = ("transformers", "datasets", "huggingface_hub", "peft", "trl", "accelerate", "bitsandbytes")
# the libraries that install their own stderr handler (configured when their logging module is imported)
_OWN_HANDLER = {"transformers": "transformers.utils.logging", "datasets": "datasets.utils.logging",
                "huggingface_hub": "huggingface_hub.utils.logging"}
_MISSING = object()


class _State:
    """What this process's quiet calls changed, so that a verbose call can undo it."""

    def __init__(self) -> None:
        self.quiet = False
        self.env: dict[str, Any] = {}  # variable -> its value before the first quiet call (_MISSING: unset)
        self.loggers: dict[str, tuple[int, bool]] = {}  # logger -> (level, propagate) before
        self.handler: logging.Handler | None = None
        self.removed: list[tuple[logging.Logger, logging.Handler]] = []  # the libraries' stderr handlers
        self.filters: list[tuple] = []


_state = _State()


def is_quiet() -> bool:
    """Whether a quiet call is in force (the studio's commands and the training process make one)."""
    return _state.quiet


def is_verbose() -> bool:
    """True when this process shows the libraries' output (`studio --verbose`, STUDIO_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_libraries(verbose: bool = False, log_file: str | Path | IO[str] | None = None) -> None:
    """Keep the libraries' progress bars, logs and deprecation warnings off the terminal (module
    docstring); with `log_file`, their logs go there. Call it before the libraries are imported;
    calling it again is harmless (a later `log_file` replaces an earlier one). `verbose` (or
    STUDIO_VERBOSE=1) suppresses nothing and undoes an earlier quiet call of this process."""
    _hooks.install()  # the bitsandbytes guard: in verbose mode too
    if verbose or is_verbose():
        os.environ[VERBOSE_ENV] = "1"
        _restore()
        return
    _state.quiet = True
    for name, value in QUIET_ENV.items():
        _state.env.setdefault(name, os.environ.get(name, _MISSING))
        os.environ[name] = value
    _bars_off_in_imported_libraries()
    for lib in LOGGING_LIBRARIES:
        _set_logger(lib, logging.ERROR if _state.handler is None else logging.WARNING)
    if log_file is not None:
        _route_logs(log_file)
    _filter_warnings()


# ---------------------------------------------------------------- progress bars, logging, warnings

def _bars_off_in_imported_libraries() -> None:
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    if "datasets.utils.tqdm" in sys.modules:
        sys.modules["datasets.utils.tqdm"].disable_progress_bars()
    if "huggingface_hub.utils.tqdm" in sys.modules:
        sys.modules["huggingface_hub.utils.tqdm"].disable_progress_bars()


def _set_logger(name: str, level: int, *, propagate: bool | None = None) -> None:
    logger = logging.getLogger(name)
    _state.loggers.setdefault(name, (logger.level, logger.propagate))
    logger.setLevel(level)
    if propagate is not None:
        logger.propagate = propagate


def _route_logs(log_file: str | Path | IO[str]) -> None:
    """The libraries' WARNING and above to `log_file`, none to the terminal."""
    for lib, module in _OWN_HANDLER.items():
        try:
            mod = importlib.import_module(module)  # configures the library's root logger now, not later
        except ImportError:
            continue
        if lib == "transformers":
            mod.get_logger()  # transformers adds its handler on first use
        logger = logging.getLogger(lib)
        for h in list(logger.handlers):
            if type(h) is logging.StreamHandler:  # the library's own, on stderr
                logger.removeHandler(h)
                _state.removed.append((logger, h))
    if hasattr(log_file, "write"):
        handler: logging.Handler = logging.StreamHandler(log_file)
    else:
        handler = _LogFile(log_file, encoding="utf-8", delay=True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    old, _state.handler = _state.handler, handler
    for lib in LOGGING_LIBRARIES:
        logger = logging.getLogger(lib)
        if old is not None:
            logger.removeHandler(old)
        logger.addHandler(handler)
        _set_logger(lib, logging.WARNING, propagate=False)
    if old is not None:
        old.close()


class _LogFile(logging.FileHandler):
    def emit(self, record: logging.LogRecord) -> None:
        # FileHandler opens a delayed file outside the try that routes write errors to handleError
        # (Python 3.11), so a log whose folder is gone raised into whatever code logged (CI: a
        # later test's transformers warning met an earlier test's unmounted run folder)
        try:
            super().emit(record)
        except OSError:
            pass

    def handleError(self, record: logging.LogRecord) -> None:
        """A log line that cannot be written (a full disk) is lost, without a traceback on the terminal."""


def _filter_warnings() -> None:
    libs = rf"({'|'.join(WARNING_LIBRARIES)})(\.|$)"
    wanted: list[tuple[type[Warning], str]] = [(c, libs) for c in (FutureWarning, DeprecationWarning,
                                                                      PendingDeprecationWarning)]
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # no cryptography, no asyncssh warning
        pass
    else:
        wanted.append((CryptographyDeprecationWarning, r"asyncssh(\.|$)"))
    for category, module in wanted:
        warnings.filterwarnings("ignore", category=category, module=module)
        entry = warnings.filters[0]
        if entry not in _state.filters:
            _state.filters.append(entry)


def _restore() -> None:
    """Undo this process's quiet calls (a verbose call after a quiet one, e.g. in tests)."""
    if not _state.quiet:
        return
    _state.quiet = False
    for name, value in _state.env.items():
        if value is _MISSING:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _state.env = {}
    for name, (level, propagate) in _state.loggers.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        if _state.handler is not None:
            logger.removeHandler(_state.handler)
    _state.loggers = {}
    if _state.handler is not None:
        _state.handler.close()
        _state.handler = None
    for logger, h in _state.removed:
        logger.addHandler(h)
    _state.removed = []
    for entry in _state.filters:
        if entry in warnings.filters:
            warnings.filters.remove(entry)  # type: ignore[attr-defined]  # a list at runtime; typeshed says Sequence
    _state.filters = []
    getattr(warnings, "_filters_mutated", lambda: None)()
    with warnings.catch_warnings():  # a library imported while quiet keeps the variable's value, and says so
        warnings.simplefilter("ignore")
        if "transformers.utils.logging" in sys.modules:
            sys.modules["transformers.utils.logging"].enable_progress_bar()
        if "datasets.utils.tqdm" in sys.modules:
            sys.modules["datasets.utils.tqdm"].enable_progress_bars()


# ---------------------------------------------------------------- code run around two library modules

@contextmanager
def _bitsandbytes_without_hub_kernels() -> Iterator[None]:
    """While bitsandbytes' CPU backend runs its module code: `from kernels import get_kernel` fails,
    so it skips the Hub lookup; its warning about that (which would name a download we stopped) is
    not printed."""
    saved = sys.modules.get("kernels", _MISSING)
    sys.modules["kernels"] = None  # type: ignore[assignment]  # import raises ImportError
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
        if saved is _MISSING:
            sys.modules.pop("kernels", None)
        else:
            sys.modules["kernels"] = saved  # type: ignore[assignment]  # the module taken out above


class _Loader:
    """A module's own loader, with a context manager around its module code."""

    def __init__(self, loader: Any, around: Callable[[], Any]):
        self.loader, self.around = loader, around

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self.around():
            self.loader.exec_module(module)

    def __getattr__(self, name: str):  # get_source, get_code, is_package, resource readers
        return getattr(self.loader, name)


class _ImportHooks:
    """A meta path finder for the modules named in `around`: it finds them as the path finder does
    and wraps their loader (bitsandbytes is imported by peft, deep inside a library call, so there
    is no call site of ours to wrap)."""

    def __init__(self) -> None:
        self.around: dict[str, Callable[[], Any]] = {
            "bitsandbytes.backends.cpu.ops": _bitsandbytes_without_hub_kernels}

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in self.around:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, self.around[fullname])  # type: ignore[assignment]  # duck-typed: forwards the rest
        return spec


_hooks = _ImportHooks()
