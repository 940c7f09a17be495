"""What the `train` extra installs, and the one-line error when it is missing.

`pip install finetune-studio` is enough to curate and review; training, chat, merge, serve and
evals need `pip install 'finetune-studio[train]'` (torch, transformers, peft, trl, accelerate,
datasets; bitsandbytes on Linux). The entry points that need them call `require_train` first, so a
missing package is one line naming the pip command, never an ImportError from deep inside a library.
Looking the packages up (`find_spec`) imports none of them.
"""
from __future__ import annotations

import importlib.util

from .errors import TrainingError

TRAIN_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
INSTALL_TRAIN = "pip install 'finetune-studio[train]'"


class MissingExtra(TrainingError):
    """A package of the `train` extra is not installed here."""


def missing_train_packages() -> list[str]:
    """The packages of the train extra that this Python cannot import."""
    missing = []
    for name in TRAIN_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it, or a half-removed package
            found = False
        if not found:
            missing.append(name)
    return missing


def require_train(what: str = "training") -> None:
    """Raise MissingExtra (one line with the pip command) unless the train extra is installed."""
    missing = missing_train_packages()
    if missing:
        raise MissingExtra(f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                           f"not installed here: {INSTALL_TRAIN}")


def missing_extra_error(exc: BaseException) -> MissingExtra | None:
    """For a catch-all (the CLI's main, the app's job runner): the one-line error when `exc` is an
    ImportError of a train-extra package, else None."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TRAIN_PACKAGES:
        return MissingExtra(f"{exc.name.split('.')[0] if exc.name else 'a package'} is not installed here: {INSTALL_TRAIN}")
    return None
