"""`studio remote check HOST` / `studio remote install HOST`: is this GPU box ready to train?

check prints the remote Python, the trainer there, torch and CUDA, each GPU's name and memory,
free disk in the studio's folder, and for anything missing the exact command that fixes it.
install uploads this studio's trainer (the training/ package, content-addressed) now; `studio
train --host` does the same on every launch, so the box never runs a different trainer version.
"""
from __future__ import annotations

from ._command import Args, argument, studio_command, studio_group
from ._common import out, out_json
from ._remote import host_options, host_spec, run_async


def cmd_check(args: Args) -> int:
    from training.remote import check_host

    spec = host_spec(args)
    info = run_async(check_host(spec))
    if args.json:
        out_json(info)
        return 0 if not info["problems"] else 1
    out(f"host       {spec.target}")
    out(f"python     {info['python']} ({info['executable']})")
    trainer = info.get("training")
    out(f"trainer    {trainer + (' (uploaded by this studio)' if info['trainer_uploaded'] else '') if trainer else 'not there yet'}")
    if info.get("torch"):
        cuda = f"CUDA {info['cuda_version']}, available" if info.get("cuda_available") else "no CUDA"
        out(f"torch      {info['torch']} ({cuda})")
    else:
        out(f"torch      missing ({info.get('torch_error', '')})")
    libs = ", ".join(f"{k} {v}" for k, v in info["deps"].items() if v and k != "torch")
    out(f"libraries  {libs or 'none of the training libraries'}")
    gpus = info.get("gpus") or info.get("torch_gpus") or []
    if gpus:
        for n, gpu in enumerate(gpus):
            used = f", {gpu['used_gb']} GB in use" if "used_gb" in gpu else ""
            out(f"gpu {n}      {gpu['name']}, {gpu['memory_gb']} GB{used}")
    else:
        out(f"gpus       none ({info.get('gpu_error') or 'torch sees no CUDA device'})")
    disk = info["disk"]
    out(f"disk       {disk['free_gb']} GB free of {disk['total_gb']} GB at {info['root']}")
    for problem in info["problems"]:
        out(f"  ! {problem}")
    return 0 if not info["problems"] else 1


def cmd_install(args: Args) -> int:
    from training.remote import install_trainer

    spec = host_spec(args)
    lib = run_async(install_trainer(spec))
    out(f"trainer uploaded to {spec.target}:{lib}; runs started with --host use it")
    return 0


HOST_HELP = "an ~/.ssh/config alias or user@host[:port]"


@studio_group("remote", "check or prepare a remote GPU box reached over SSH", subcommand_metavar="ACTION")
def command() -> None:
    """An action is required: check or install."""


@studio_command("check", "report python, torch, CUDA, GPUs and free disk on HOST", json_flag=True)
@argument("host", metavar="HOST", help=HOST_HELP)
@host_options
def _check_command(args: Args) -> int:
    return cmd_check(args)


@studio_command("install", "upload this studio's trainer to HOST")
@argument("host", metavar="HOST", help=HOST_HELP)
@host_options
def _install_command(args: Args) -> int:
    return cmd_install(args)


command.add_command(_check_command)
command.add_command(_install_command)
