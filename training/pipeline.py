"""Two-stage fine-tuning as one config: continued pretraining on raw domain text, then task SFT.

The seed's recipe for specialised domains (medicine, law, finance): stage 1 teaches the jargon
from unlabelled text with a larger LoRA rank (32-64); stage 2 teaches the task from labelled
samples with a smaller rank (8-16). One YAML file holds both:

```yaml
# reproduce: studio pipeline domain.yaml
name: legal                  # run ids become legal-1-pretrain, legal-2-sft
base: Qwen/Qwen2.5-7B        # shared by every stage unless a stage overrides it
method: qlora
preset: seed                 # optional, applied under every stage
set: {train.seed: 7}         # optional, dotted keys for every stage
stages:
  - name: pretrain
    split: corpus.jsonl      # {"text": ...} rows
    set: {data.kind: text, lora.r: 64, lora.alpha: 128, train.epochs: 1}
  - name: sft
    split: v1                # a split name (the CLI resolves it) or a path
    set: {lora.r: 16, lora.alpha: 32}
    replay: {file: general.jsonl, fraction: 0.1}   # optional, see training/replay.py
```

How stage 2 starts from stage 1: stage 1's adapter is MERGED into the base (reloaded in 16/32 bit,
never 4-bit: training/merge.py verifies the logits) into `RUN1/merged`, and stage 2 trains a NEW
adapter on that merged model. Why merge rather than keep training stage 1's adapter: the seed
wants a different rank per stage (64 to absorb a domain, 16 for the task), and an adapter's rank
is fixed once trained; after the merge the domain knowledge is part of the base, stage 2's adapter
stays small, and `serve`/`merge` treat stage 2 like any run (its base is RUN1/merged).

Each stage is an ordinary run directory; `pipeline.json` in each links them (stage, previous run,
next run, the merged base), and RUNS_DIR/NAME.pipeline.json holds the whole pipeline's state.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, TrainingError
from .rundir import RunState, RunStatus
from .yaml_lines import parse_yaml

PIPELINE_FILE = "pipeline.json"
TOP_KEYS = {"name", "base", "method", "preset", "config", "set", "stages"}
STAGE_KEYS = {"name", "split", "preset", "config", "set", "base", "method", "replay"}


@dataclass
class Stage:
    name: str
    split: str
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted keys, pipeline-wide ones first
    preset: str | None = None
    config: str | None = None  # a partial YAML config file for this stage
    replay: dict[str, Any] | None = None  # {file, fraction, seed?}
    line: int | None = None


@dataclass
class Pipeline:
    name: str
    stages: list[Stage]
    source: str

    def run_id(self, index: int) -> str:
        return f"{self.name}-{index + 1}-{self.stages[index].name}"


def _flat(mapping: Any, where: str) -> dict[str, Any]:
    """`set:` as dotted keys; nested mappings are flattened (`{lora: {r: 8}}` -> `lora.r`)."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: set: expected a mapping of config keys to values, e.g. {{lora.r: 64}}")
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in _flat(v, where).items()})
        else:
            out[str(k)] = v
    return out


def load_pipeline(path: str | Path, resolve_split: Callable[[str], str] | None = None) -> Pipeline:
    """Read and check a pipeline file; every stage's config is validated before anything trains."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such pipeline file")
    doc = parse_yaml(path.read_text(encoding="utf-8"), str(path), ConfigError)
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline is a mapping with `name` and `stages`")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; pipeline keys: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name") or path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,60}", str(name)):
        raise ConfigError(f"{path}: name {name!r}: use letters, digits, '.', '_' or '-'")
    stages_data = data.get("stages")
    if not isinstance(stages_data, list) or not stages_data:
        raise ConfigError(f"{path}: stages: expected a list of stages (pretrain, then sft)")
    common = {}
    for key in ("base", "method"):
        if key in data:
            common[key] = data[key]
    common.update(_flat(data.get("set"), str(path)))
    stages = []
    for i, s in enumerate(stages_data):
        where = f"{doc.where(f'stages[{i}]')}: stages[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{where}: expected a mapping with name and split")
        unknown = set(s) - STAGE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; stage keys: {', '.join(sorted(STAGE_KEYS))}")
        if not s.get("split"):
            raise ConfigError(f"{where}: split: every stage needs its data (a split name or a file)")
        stage_name = str(s.get("name") or f"stage{i + 1}")
        overrides = dict(common)
        for key in ("base", "method"):
            if key in s:
                overrides[key] = s[key]
        overrides.update(_flat(s.get("set"), where))
        if i > 0 and "base" in s:
            raise ConfigError(f"{where}: base: only the first stage names a base; later stages start from the "
                              f"previous stage's merged model")
        replay = s.get("replay")
        if replay is not None and (not isinstance(replay, dict) or "file" not in replay):
            raise ConfigError(f"{where}: replay: expected {{file: general.jsonl, fraction: 0.1}}")
        split = str(s["split"])
        if resolve_split:
            split = resolve_split(split)
        elif not Path(split).is_absolute():
            split = str((path.parent / split).resolve())
        stages.append(Stage(name=stage_name, split=split, overrides=overrides,
                            preset=s.get("preset", data.get("preset")), config=s.get("config", data.get("config")),
                            replay=replay, line=doc.lines.get(f"stages[{i}]")))
    pipeline = Pipeline(name=str(name), stages=stages, source=str(path.resolve()))
    for i in range(len(stages)):
        stage_config(pipeline, i, base_override="(previous stage)" if i else None)  # validate now, fail early
    return pipeline


def stage_config(pipeline: Pipeline, index: int, base_override: str | None = None):
    """The TrainConfig of stage `index`; later stages get the previous stage's merged model as base."""
    from .config import load_config

    stage = pipeline.stages[index]
    overrides = dict(stage.overrides, **{"data.split": stage.split})
    if base_override:
        overrides["base"] = base_override
    config_path = stage.config
    if config_path and not Path(config_path).is_absolute():
        config_path = str(Path(pipeline.source).parent / config_path)
    try:
        return load_config(config_path, preset=stage.preset, overrides=overrides)
    except ConfigError as exc:
        raise ConfigError(f"{pipeline.source}:{stage.line or '?'}: stage {stage.name!r}: {exc}") from None


def run_pipeline(pipeline: Pipeline, runs_dir: str | Path, *, reproduce: str | None = None,
                 execute: Callable[[Path], RunStatus] | None = None, merge_dtype: str | None = None,
                 on_stage: Callable[[int, Path, RunStatus], None] | None = None) -> list[dict[str, Any]]:
    """Train the stages in order; between stages merge the adapter (16/32-bit) and start the next on it.
    Stops at the first stage that does not finish. Returns one row per started stage."""
    from . import runs
    from .merge import merge_run
    from .replay import apply_replay

    run_one: Callable[[Path], RunStatus] = execute or runs.run_foreground
    runs_dir = Path(runs_dir)
    ids = [pipeline.run_id(i) for i in range(len(pipeline.stages))]
    taken = [r for r in ids if (runs_dir / r).exists()]
    if taken:
        raise TrainingError(f"pipeline {pipeline.name!r}: run {taken[0]} already exists in {runs_dir}; "
                            f"rename the pipeline (name:) or remove the old runs")
    rows: list[dict[str, Any]] = []
    base_from: str | None = None
    for i, stage in enumerate(pipeline.stages):
        cfg = stage_config(pipeline, i, base_override=base_from)
        line = f"{reproduce}  # stage {i + 1}/{len(pipeline.stages)} ({stage.name})" if reproduce else None
        run_dir = runs.create_run(runs_dir, cfg, name=ids[i], reproduce=line)
        link = {"pipeline": pipeline.name, "source": pipeline.source, "stage": i + 1, "of": len(pipeline.stages),
                "stage_name": stage.name, "runs": ids, "previous": ids[i - 1] if i else None,
                "next": ids[i + 1] if i + 1 < len(ids) else None, "base_from": base_from}
        if stage.replay:
            info = apply_replay(run_dir, _resolve(pipeline, stage.replay["file"]), float(stage.replay.get("fraction", 0.1)),
                                stage.replay.get("seed"))
            link["replay"] = {k: v for k, v in info.to_dict().items() if k != "positions"}
        if base_from:
            _base_relative_to_run(run_dir)
        (run_dir / PIPELINE_FILE).write_text(json.dumps(link, indent=1) + "\n", encoding="utf-8")
        status = run_one(run_dir)
        row = {"stage": i + 1, "name": stage.name, "run": run_dir.name, "state": str(status.state),
               "eval_loss": status.eval_loss, "base": cfg.base, "rank": cfg.lora.r, "kind": cfg.data.kind}
        rows.append(row)
        _record(runs_dir, pipeline, rows)
        if on_stage:
            on_stage(i, run_dir, status)
        if status.state != RunState.DONE:
            row["stopped"] = f"stage {stage.name} ended {status.state}: later stages not started"
            _record(runs_dir, pipeline, rows)
            break
        if i + 1 < len(pipeline.stages):
            if cfg.uses_adapter:
                merged = merge_run(run_dir, dtype=merge_dtype)
                if not merged.ok:
                    raise TrainingError(f"stage {stage.name}: merged model differs from the adapter by "
                                        f"{merged.max_abs_diff:.3g} (> {merged.tolerance:.3g}); retry with merge dtype fp32")
                row["merged"] = str(merged.out_dir)
                row["merge_max_abs_diff"] = merged.max_abs_diff
                base_from = str(merged.out_dir.resolve())
            else:
                base_from = str((run_dir / "model").resolve())  # a full fine-tune is already a whole model
            _record(runs_dir, pipeline, rows)
    return rows


def _base_relative_to_run(run_dir: Path) -> None:
    """Rewrite config.yaml's base (the previous stage's merged model, an absolute path so far) relative
    to this run (`../NAME-1-pretrain/merged`), so the workspace can move: load_run_config resolves it
    against the run directory (training.config.resolve_run_base). The comment lines on top stay."""
    from .config import load_run_config, portable_base, portable_config

    path = run_dir / "config.yaml"
    cfg = load_run_config(run_dir)
    if portable_base(run_dir, cfg.base) == cfg.base:
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    head = []
    for line in lines:
        if not line.startswith("#"):
            break
        head.append(line)
    body = portable_config(cfg, run_dir).to_yaml()
    path.write_text("".join(f"{h}\n" for h in head) + body, encoding="utf-8")


def _resolve(pipeline: Pipeline, file: str) -> str:
    p = Path(file)
    return str(p if p.is_absolute() else Path(pipeline.source).parent / p)


def _record(runs_dir: Path, pipeline: Pipeline, rows: list[dict[str, Any]]) -> None:
    data = {"pipeline": pipeline.name, "source": pipeline.source,
            "runs": [pipeline.run_id(i) for i in range(len(pipeline.stages))], "stages": rows}
    path = runs_dir / f"{pipeline.name}.pipeline.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
