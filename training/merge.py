"""Merge a run's LoRA/QLoRA adapter into its base: one plain model folder, no PEFT at load time.

The base is always reloaded in 16 or 32 bit for the merge, QLoRA runs included: merging into a
4-bit base drifts (max logit difference 0.7 measured, design.md) while a 16/32-bit merge matches the
adapter (2e-7). Before saving, the merged model's logits on a probe chat are compared with the
base + adapter's, and the largest difference is reported (and checked against a tolerance for the
dtype), so a bad merge is caught here and not by the user's evaluation a week later.

The folder holds the model, the tokenizer the run trained with (chat template included) and
`merged.json` (run, base, adapter, dtype, the measured difference). A merged tiny base keeps its
`UNTRAINED.txt` label.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .inference import RunUnusable, describe_run, load_tokenizer

MERGED_DIR = "merged"  # default output: RUN_DIR/merged
PROBE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "用Python实现快速排序。Explain it in one sentence."},
    {"role": "assistant", "content": "Pick a pivot, partition, recurse: def qs(a): ..."},
]
# Largest acceptable |merged - adapter| logit difference, relative to the largest |logit|: a merge
# only reorders float additions, so fp32 agrees to ~1e-6; 16-bit weights round each sum once.
REL_TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3}


@dataclass(frozen=True)
class MergeResult:
    out_dir: Path
    dtype: str
    max_abs_diff: float  # merged vs base + adapter, max |logit difference| on the probe
    adapter_effect: float  # base vs base + adapter on the same probe: the difference the adapter makes
    tolerance: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def base_dtype_name(base_path: str) -> str:
    """The dtype a merge should keep: the base's own 16-bit dtype when its config records one, else fp32."""
    config = Path(base_path) / "config.json"
    if not config.is_file():
        return "bf16"  # a hub id: the common release dtype; pass dtype= to choose
    data = json.loads(config.read_text(encoding="utf-8"))
    saved = str(data.get("dtype") or data.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(saved, "fp32")


def merge_run(run_dir: str | Path, out_dir: str | Path | None = None, *, dtype: str | None = None,
              device: str | None = None, overwrite: bool = False) -> MergeResult:
    """Merge RUN_DIR's adapter into its base in `dtype` (bf16, fp16, fp32; default: the base's own)
    and save to `out_dir` (default RUN_DIR/merged). Returns the verification numbers."""
    from .extras import require_train

    require_train("merging")
    import torch
    from peft import PeftModel

    from .inference import ensure_base, load_base_model, pick_device, pick_dtype

    run = describe_run(run_dir)
    ensure_base(run)
    if run.method == "full":
        raise RunUnusable(f"{run.run_dir}: a full fine-tune has no adapter to merge; {run.model_dir} is already "
                          f"a complete model")
    out = Path(out_dir) if out_dir else run.run_dir / MERGED_DIR
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunUnusable(f"{out} already exists and is not empty; pick another --out or remove it")
    dtype = dtype or base_dtype_name(run.base_path)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)

    adapter = run.adapter_dir
    tokenizer = load_tokenizer(adapter if adapter is not None and (adapter / "tokenizer_config.json").is_file()
                               else run.base_path)
    # Never 4-bit here, whatever the run trained on (module docstring).
    base = load_base_model(run.base_path, device=device, dtype=torch_dtype, quantize_4bit=False)
    model = PeftModel.from_pretrained(base, str(run.adapter_dir))
    model.eval()
    ids = tokenizer(tokenizer.apply_chat_template(PROBE, tokenize=False), add_special_tokens=False,
                    return_tensors="pt")["input_ids"].to(device)
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits.float()
        with model.disable_adapter():
            plain = model(input_ids=ids).logits.float()
        merged = model.merge_and_unload()
        merged_logits = merged(input_ids=ids).logits.float()
    diff = (merged_logits - with_adapter).abs().max().item()
    effect = (with_adapter - plain).abs().max().item()
    tolerance = REL_TOLERANCE[dtype if dtype in REL_TOLERANCE else "bf16"] * max(1.0, with_adapter.abs().max().item())
    ok = diff == diff and diff <= tolerance  # diff == diff: not NaN

    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if (Path(run.base_path) / "UNTRAINED.txt").is_file():
        shutil.copy(Path(run.base_path) / "UNTRAINED.txt", tmp / "UNTRAINED.txt")
    result = MergeResult(out_dir=out, dtype=dtype, max_abs_diff=diff, adapter_effect=effect, tolerance=tolerance, ok=ok)
    (tmp / "merged.json").write_text(json.dumps({
        "run": run.name, "base": run.base, "method": run.method, "adapter": str(run.adapter_dir),
        **{k: v for k, v in result.to_dict().items() if k != "out_dir"}}, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m training.merge RUN_DIR [--out DIR] [--dtype bf16|fp16|fp32]` on a box without the studio."""
    import argparse
    import sys

    from .errors import TrainingError

    ap = argparse.ArgumentParser(prog="python -m training.merge", description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out")
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"))
    ap.add_argument("--device")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        result = merge_run(args.run, args.out, dtype=args.dtype, device=args.device, overwrite=args.force)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
