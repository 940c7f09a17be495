"""`studio models list|fetch|add|rm`: the base models that install offline (training/models.py).

The store is shared by every workspace ($STUDIO_MODELS, else ~/.cache/finetune-studio/models).
A training config's `base:` may name any entry listed here.
"""
from __future__ import annotations

import sys

from ._command import Args, argument, option, studio_command, studio_group
from ._common import out, out_json


def cmd_list(args: Args) -> int:
    from training import models

    rows = models.list_models()
    if args.json:
        out_json({"store": str(models.store_dir()), "models": [
            {"name": m.name, "present": m.present, "path": str(m.path), "size_mb": round(m.size_mb, 1),
             "source": m.entry.source if m.entry else "gguf", "licence": m.entry.licence if m.entry else "",
             "builtin": bool(m.entry and m.entry.builtin)} for m in rows]})
        return 0
    out(f"model store: {models.store_dir()}")
    out(f"{'name':<26} {'state':<11} {'size':>8}  {'licence':<11} source")
    for m in rows:
        state = "stored" if m.present else "not fetched"
        size = f"{m.size_mb:,.0f} MB" if m.present else (f"{m.entry.size_mb:,.0f} MB" if m.entry and m.entry.size_mb else "-")
        source = m.entry.source if m.entry else "converted .gguf"
        out(f"{m.name:<26} {state:<11} {size:>8}  {(m.entry.licence if m.entry else '') or '-':<11} {source}")
    out("use one with: studio train SPLIT --base NAME")
    return 0


def cmd_fetch(args: Args) -> int:
    from training import models

    def say(msg: str) -> None:
        print(f"studio models: {msg}", file=sys.stderr)

    entry = models.registry().get(args.name)
    if entry is None:
        from curation.errors import NotFound

        raise NotFound(f"no model named {args.name!r} in the registry; `studio models list` shows them")
    path = models.ensure(entry, fetch=True, progress=say)
    if args.json:
        out_json({"name": args.name, "path": str(path)})
    else:
        out(f"{args.name}: {path}")
    return 0


def cmd_add(args: Args) -> int:
    from training import models

    entry = models.add_entry(args.name, args.source, licence=args.licence)
    if args.json:
        out_json({"name": entry.name, "source": entry.source, "sha256": entry.sha256})
    else:
        out(f"added {entry.name}: {entry.source} (converted into the store on first use)")
    return 0


def cmd_rm(args: Args) -> int:
    from training import models

    removed = models.remove(args.name)
    if args.json:
        out_json({"name": args.name, "removed": removed})
    else:
        out(f"removed {args.name}: {', '.join(removed)}")
    return 0


@studio_group("models", "list, fetch, add or remove offline base models (the model store)", default=cmd_list,
              json_flag=True, subcommand_metavar="[ACTION]",
              epilog="examples: studio models list | studio models fetch smollm2-135m-instruct | "
                     "studio models add my-model ./model.Q4_K_M.gguf | studio models rm my-model")
def command() -> None:
    """Without an action: list."""


def _action(name: str, help: str, handler, *params) -> None:
    fn = handler
    for decorate in reversed(params):
        fn = decorate(fn)
    command.add_command(studio_command(name, help, json_flag=True)(fn))


_action("list", "registry entries and converted models, with their state", lambda args: cmd_list(args))
_action("fetch", "download and convert a registry model into the store", lambda args: cmd_fetch(args),
        argument("name", metavar="NAME"))
_action("add", "register NAME for a .gguf file, a model folder or a hub id", lambda args: cmd_add(args),
        argument("name", metavar="NAME"),
        argument("source", metavar="SOURCE", help=".gguf file, Hugging Face folder, or org/name"),
        option("--licence", default="", help="licence to show in the list"))
_action("rm", "forget a user entry and delete its converted copy", lambda args: cmd_rm(args),
        argument("name", metavar="NAME"))
