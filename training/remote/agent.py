"""The remote half: a standard-library-only script the studio pipes into the remote Python.

`python - COMMAND JSON < agent.py` runs one command on the GPU box and prints one JSON object.
It needs nothing installed there, so `studio remote check` works on a bare box, and every remote
step (hash a blob, lay out a run, start it detached, list, cancel) is one round trip with
structured output instead of shell text parsing. Keep it importable and runnable on Python 3.8+.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

DEPS = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets",
        "tokenizers", "PyYAML", "pydantic")


def _expand(path):
    return os.path.abspath(os.path.expanduser(path))


def _version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return None


def _disk(path):
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    usage = shutil.disk_usage(probe)
    return {"path": path, "free_gb": round(usage.free / 2**30, 1), "total_gb": round(usage.total / 2**30, 1)}


def _gpus():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None, "nvidia-smi not found"
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,memory.used,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except Exception as exc:
        return None, str(exc)
    if out.returncode != 0:
        return None, (out.stderr or out.stdout).strip()[:300]
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            gpus.append({"name": parts[0], "memory_gb": round(float(parts[1]) / 1024, 1),
                         "used_gb": round(float(parts[2]) / 1024, 1), "driver": parts[3]})
    return gpus, None


def cmd_check(args):
    root = _expand(args["root"])
    info = {"python": sys.version.split()[0], "executable": sys.executable,
            "platform": sys.platform, "disk": _disk(root), "deps": {d: _version(d) for d in DEPS}}
    sys.path[:0] = list(args.get("pythonpath") or [])
    try:
        import importlib.util
        spec = importlib.util.find_spec("training")
        info["training"] = os.path.dirname(spec.origin) if spec and spec.origin else None
    except Exception:
        info["training"] = None
    info["studio_version"] = _version("finetune-studio")
    try:
        import torch
        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_version"] = torch.version.cuda
        info["torch_gpus"] = [{"name": torch.cuda.get_device_name(i),
                               "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                              for i in range(torch.cuda.device_count())] if info["cuda_available"] else []
    except Exception as exc:
        info["torch"] = None
        info["torch_error"] = f"{type(exc).__name__}: {exc}"[:300]
    info["gpus"], info["gpu_error"] = _gpus()
    return info


def cmd_sha256(args):
    path = _expand(args["path"])
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "size": os.path.getsize(path)}


def cmd_extract(args):
    """Unpack the trainer's zip into lib/HASH once; a half-written folder is never used."""
    dest = _expand(args["dest"])
    if not os.path.isdir(dest):
        tmp = "%s.tmp-%d" % (dest, os.getpid())
        with zipfile.ZipFile(_expand(args["blob"])) as zf:
            zf.extractall(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:   # another launch unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return {"dest": dest}


def cmd_layout(args):
    run_dir = _expand(args["run_dir"])
    os.makedirs(run_dir, exist_ok=True)
    for rel, blob in args.get("links", {}).items():
        path = os.path.join(run_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(_expand(blob), path)
    for rel, text in args.get("files", {}).items():
        path = os.path.join(run_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return {"run_dir": run_dir}


def cmd_start(args):
    """Start `python -m training run RUN_DIR` in its own session (it survives the SSH connection
    dropping: no controlling terminal, no SIGHUP), output to train.log, pid to remote.pid."""
    run_dir = _expand(args["run_dir"])
    env = dict(os.environ)
    env.update(args.get("env") or {})
    paths = [_expand(p) for p in args.get("pythonpath") or []]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    log = open(os.path.join(run_dir, "train.log"), "ab")
    # the interpreter running this agent is the host's configured python: the trainer gets it too
    argv = [sys.executable] + list(args["module_args"])
    proc = subprocess.Popen(argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    with open(os.path.join(run_dir, "remote.pid"), "w") as f:
        f.write(str(proc.pid))
    return {"pid": proc.pid, "run_dir": run_dir}


def _alive(pid):
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    try:   # a zombie (exited, parent gone, not yet reaped) is not a running trainer
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _pid(run_dir, status):
    try:
        with open(os.path.join(run_dir, "remote.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return status.get("pid")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _last_metrics(path):
    """The last complete metrics line that has a loss, read from the file's tail."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().split(b"\n")
    except OSError:
        return {}, 0
    for line in reversed(lines[:-1] if lines else []):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "loss" in row:
            return row, size
    return {}, size


def _run_summary(run_dir):
    status = _read_json(os.path.join(run_dir, "status.json"))
    last, size = _last_metrics(os.path.join(run_dir, "metrics.jsonl"))
    pid = _pid(run_dir, status)
    alive = _alive(pid)
    state = status.get("state") or "queued"
    if state in ("queued", "running") and not alive and pid:
        state = "lost"   # the process is gone without writing a final state (killed, machine rebooted)
    return {"run_id": os.path.basename(run_dir), "run_dir": run_dir, "state": state, "pid": pid, "alive": alive,
            "step": status.get("step", last.get("step")), "max_steps": status.get("max_steps"),
            "loss": last.get("loss"), "metrics_bytes": size, "status": status,
            "has_adapter": os.path.isdir(os.path.join(run_dir, "adapter"))}


def cmd_status(args):
    return _run_summary(_expand(args["run_dir"]))


def cmd_runs(args):
    runs_dir = os.path.join(_expand(args["root"]), "runs")
    names = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
    return {"runs": [_run_summary(os.path.join(runs_dir, n)) for n in names
                     if os.path.isdir(os.path.join(runs_dir, n))]}


def cmd_cancel(args):
    """Ask the trainer to stop: SIGTERM (the trainer saves and writes state `cancelled`); after
    `grace` seconds still alive, SIGKILL to its whole process group."""
    run_dir = _expand(args["run_dir"])
    summary = _run_summary(run_dir)
    pid = summary["pid"]
    if not summary["alive"]:
        return {"signalled": False, "state": summary["state"], "pid": pid}
    # SIGTERM to the trainer only (training.runs.cancel's protocol: it stops at the step's end
    # with a checkpoint); its helpers (data loader workers) follow it. The group gets SIGKILL only
    # when the grace runs out.
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.time() + float(args.get("grace", 30))
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    killed = False
    if _alive(pid):
        try:
            os.killpg(int(pid), signal.SIGKILL)
        except OSError:
            os.kill(int(pid), signal.SIGKILL)
        killed = True
    return {"signalled": True, "killed": killed, "pid": pid, "state": _run_summary(run_dir)["state"]}


COMMANDS = {"check": cmd_check, "sha256": cmd_sha256, "extract": cmd_extract, "layout": cmd_layout,
            "start": cmd_start, "status": cmd_status, "runs": cmd_runs, "cancel": cmd_cancel}


def main(argv):
    name, payload = argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
    try:
        result = {"ok": True, "result": COMMANDS[name](payload)}
    except Exception as exc:   # reported to the studio, which words it for the user
        result = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv)
