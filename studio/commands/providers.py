"""`studio providers list|add|remove`: the OpenAI-compatible endpoints augmentation may call.

Providers live in the workspace's studio.yaml. A provider names the environment variable holding
its key (`--api-key-env`); the key itself is never written anywhere.
"""
from __future__ import annotations

import os

from ._command import Args, argument, option, studio_command, studio_group
from ._common import open_ws, out, out_json


def _list(args: Args) -> int:
    from curation.augment.providers import list_providers

    with open_ws(args, create=True) as ws:
        provs = list_providers(ws.read_config())
    rows = [{**p.public_dict(), "key_set": bool(os.environ.get(p.api_key_env)) if p.api_key_env else None} for p in provs]
    if args.json:
        out_json(rows)
        return 0
    if not rows:
        out("no providers configured: augmentation uses OPENAI_BASE_URL / OPENAI_API_KEY and --model.")
        out("add one: studio providers add NAME --base-url URL --model MODEL --api-key-env VAR")
        return 0
    for p in provs:
        key = "no key needed" if not p.api_key_env else f"key from ${p.api_key_env} ({'set' if os.environ.get(p.api_key_env) else 'NOT SET'})"
        price = (f"${p.input_usd_per_mtok:g}/${p.output_usd_per_mtok:g} per Mtok in/out" if p.priced else "no prices")
        limits = ", ".join(x for x in (f"concurrency {p.concurrency}",
                                       f"{p.requests_per_min:g} req/min" if p.requests_per_min else "",
                                       f"{p.tokens_per_min:g} tok/min" if p.tokens_per_min else "") if x)
        out(f"{p.name}: {p.model} at {p.base_url}; {key}; {price}; {limits}")
    return 0


def _add(args: Args) -> int:
    from curation.augment.providers import Provider, add_provider

    prov = Provider(name=args.name, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env or None,
                    concurrency=args.concurrency, requests_per_min=args.rpm, tokens_per_min=args.tpm,
                    input_usd_per_mtok=args.input_price, output_usd_per_mtok=args.output_price,
                    timeout_s=args.timeout, max_attempts=args.max_attempts)
    with open_ws(args, create=True) as ws:
        add_provider(ws, prov, replace=args.replace)
        out(f"provider {prov.name} saved in {ws.config_path}")
    return 0


def _remove(args: Args) -> int:
    from curation.augment.providers import remove_provider

    with open_ws(args, create=True) as ws:
        remove_provider(ws, args.name)
        out(f"provider {args.name} removed from {ws.config_path}")
    return 0


@studio_group("providers", "list, add or remove LLM providers (OpenAI-compatible APIs) for augmentation",
              default=_list, json_flag=True, subcommand_metavar="[ACTION]")
def command() -> None:
    """Without an action: list."""


@studio_command("list", "show the providers in studio.yaml", json_flag=True)
def _list_command(args: Args) -> int:
    return _list(args)


@studio_command("add", "add a provider", description="Add an OpenAI-compatible provider to studio.yaml. "
                "Prices are USD per million tokens; the key is read from the environment variable "
                "named by --api-key-env when a job runs.")
@argument("name")
@option("--base-url", required=True, help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
@option("--model", required=True)
@option("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
        help="NAME of the environment variable holding the key (default OPENAI_API_KEY; '' for none)")
@option("--concurrency", type=int, default=8, help="requests in flight (default 8)")
@option("--rpm", type=float, help="requests per minute limit")
@option("--tpm", type=float, help="tokens per minute limit")
@option("--input-price", type=float, metavar="USD", help="USD per million prompt tokens")
@option("--output-price", type=float, metavar="USD", help="USD per million completion tokens")
@option("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
@option("--max-attempts", type=int, default=5, help="tries per request on timeouts, 429 and 5xx (default 5)")
@option("--replace", is_flag=True, help="overwrite a provider of the same name")
def _add_command(args: Args) -> int:
    return _add(args)


@studio_command("remove", "remove a provider")
@argument("name")
def _remove_command(args: Args) -> int:
    return _remove(args)


command.add_command(_list_command)
command.add_command(_add_command)
command.add_command(_remove_command)
