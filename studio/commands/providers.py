"""`studio providers list|add|remove`: the OpenAI-compatible endpoints augmentation may call.

Providers live in the workspace's studio.yaml. A provider names the environment variable holding
its key (`--api-key-env`); the key itself is never written anywhere.
"""
from __future__ import annotations

import argparse
import os

from ._common import add_command, add_workspace_option, open_ws, out, out_json


def register(sub) -> None:
    p = add_command(sub, "providers", "list, add or remove LLM providers (OpenAI-compatible APIs) for augmentation")
    actions = p.add_subparsers(dest="providers_action", metavar="ACTION")
    ls = actions.add_parser("list", help="show the providers in studio.yaml")
    add_workspace_option(ls)
    ls.add_argument("--json", action="store_true", help="print machine-readable JSON")
    ls.set_defaults(func=_list)

    add = actions.add_parser("add", help="add a provider", description="Add an OpenAI-compatible provider to studio.yaml. "
                             "Prices are USD per million tokens; the key is read from the environment variable "
                             "named by --api-key-env when a job runs.")
    add_workspace_option(add)
    add.add_argument("name")
    add.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    add.add_argument("--model", required=True)
    add.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                     help="NAME of the environment variable holding the key (default OPENAI_API_KEY; '' for none)")
    add.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    add.add_argument("--rpm", type=float, help="requests per minute limit")
    add.add_argument("--tpm", type=float, help="tokens per minute limit")
    add.add_argument("--input-price", type=float, metavar="USD", help="USD per million prompt tokens")
    add.add_argument("--output-price", type=float, metavar="USD", help="USD per million completion tokens")
    add.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    add.add_argument("--max-attempts", type=int, default=5, help="tries per request on timeouts, 429 and 5xx (default 5)")
    add.add_argument("--replace", action="store_true", help="overwrite a provider of the same name")
    add.set_defaults(func=_add)

    rm = actions.add_parser("remove", help="remove a provider")
    add_workspace_option(rm)
    rm.add_argument("name")
    rm.set_defaults(func=_remove)
    p.set_defaults(func=_list, json=False)


def _list(args: argparse.Namespace) -> int:
    from curation.augment.providers import list_providers

    with open_ws(args, create=True) as ws:
        provs = list_providers(ws.read_config())
    rows = [{**p.public_dict(), "key_set": bool(os.environ.get(p.api_key_env)) if p.api_key_env else None} for p in provs]
    if getattr(args, "json", False):
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


def _add(args: argparse.Namespace) -> int:
    from curation.augment.providers import Provider, add_provider

    prov = Provider(name=args.name, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env or None,
                    concurrency=args.concurrency, requests_per_min=args.rpm, tokens_per_min=args.tpm,
                    input_usd_per_mtok=args.input_price, output_usd_per_mtok=args.output_price,
                    timeout_s=args.timeout, max_attempts=args.max_attempts)
    with open_ws(args, create=True) as ws:
        add_provider(ws, prov, replace=args.replace)
        out(f"provider {prov.name} saved in {ws.config_path}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from curation.augment.providers import remove_provider

    with open_ws(args, create=True) as ws:
        remove_provider(ws, args.name)
        out(f"provider {args.name} removed from {ws.config_path}")
    return 0
