"""`studio eval`: answer an eval set with several models and score each answer.

Is my fine-tune better than the base, and where is it still wrong? An eval set is a split's
validation part, another split, or any alpaca / messages / sharegpt file: each item's prompt is its
conversation up to the last assistant turn, and its reference is that turn. Every model answers
every prompt through the chat template the model was trained with (training/loading.py), greedily,
in batches; each answer is scored by one scorer:

- `exact`: equal after normalisation (NFKC, lower case, punctuation, articles and extra spaces
  removed: SQuAD's rule);
- `contains`: the normalised reference occurs in the normalised answer;
- `regex`: the reference is a regular expression that must match the answer (`re.search`, case-
  insensitive);
- `numeric`: the last number in the answer equals the reference's number (relative 1e-6; commas
  as thousands separators are read);
- `json`: the answer parses as JSON (after stripping a ``` fence), and equals the reference when
  the reference is JSON too;
- `judge`: an LLM judge through a configured provider; the studio supplies it (it reuses the
  augmentation client, cache and cost accounting, which live in `curation`), as `extra_scorers`.

Models: `base` (the runs' base with their adapters switched off), a run (its adapter), `merged:RUN`
(RUN_DIR/merged), or any base that `base:` accepts (registry name, .gguf, folder, hub id).

Results (docs/contracts.md) go in RUN_DIR/evals/EVAL_ID/: `items.jsonl` (each item's prompt,
reference and every model's answer, score and time) and `summary.json` (per model: n, correct,
accuracy, mean score, items/s), written when the eval ends; a cancelled eval writes what it finished.
"""
from __future__ import annotations

import json
import math
import re
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import TrainingError

EVALS_DIR = "evals"
SCORERS = ("exact", "contains", "regex", "numeric", "json", "judge")


class EvalError(TrainingError):
    """An eval that cannot run as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- items

@dataclass
class EvalItem:
    id: str  # the split's sample id when the manifest has it ("s17"), else "PART:N" (1-based row)
    messages: list[dict[str, str]]  # the prompt: the conversation before the last assistant turn
    reference: str
    source: dict[str, Any] = field(default_factory=dict)  # the manifest's row (sample_id, source file, line)

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def load_items(source: str | Path, *, part: str = "val", limit: int | None = None) -> list[EvalItem]:
    """Eval items from a split directory (`part`: val, train or all) or a data file (every row).

    Raw-text rows have no reference and are skipped."""
    from .data import load_split

    split = load_split(source)
    if Path(source).is_dir():
        if part not in ("val", "train", "all"):
            raise EvalError(f"part {part!r}: use val, train or all")
        parts = ["train", "val"] if part == "all" else [part]
    else:
        parts = ["train"]  # a single file: every row
    rows_meta = (split.manifest or {}).get("rows", {})
    items: list[EvalItem] = []
    for name in parts:
        samples = split.val if name == "val" else split.train
        meta = rows_meta.get(name) or []
        for i, sample in enumerate(samples):
            msgs = sample.get("messages")
            if not msgs:
                continue
            last = max((j for j, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None or last == 0:
                continue
            row = meta[i] if i < len(meta) and isinstance(meta[i], dict) else {}
            sid = row.get("sample_id")
            item_id = f"s{sid}" if sid is not None else f"{name if Path(source).is_dir() else 'row'}:{i + 1}"
            items.append(EvalItem(item_id, msgs[:last], msgs[last]["content"], dict(row)))
    if not items:
        where = f"{source} ({'/'.join(parts)})"
        raise EvalError(f"{where}: no chat rows with an answer to evaluate on; export a split with --val, or give "
                        "a file of alpaca / messages / sharegpt rows")
    return items[:limit] if limit else items


# --------------------------------------------------------------------------- scorers

@dataclass
class Score:
    correct: bool
    score: float  # 0..1 (judge: its 1-5 grade mapped to 0..1)
    detail: str = ""
    cost_usd: float = 0.0


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalise(text: str) -> str:
    """SQuAD's answer normalisation, Unicode-aware: NFKC, lower case, no punctuation, no English
    articles, single spaces. CJK text keeps its characters (only punctuation goes)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(unicodedata.normalize("NFKC", text)):
        try:
            out.append(float(m.group().replace(",", "")))
        except ValueError:
            continue
    return out


def _strip_fence(text: str) -> str:
    t = text.strip()
    m = re.match(r"^```[a-zA-Z]*\s*\n(.*?)\n?```\s*$", t, re.S)
    return m.group(1) if m else t


def score_answer(scorer: str, answer: str, reference: str) -> Score:
    """One of the deterministic scorers (judge is supplied by the caller)."""
    if scorer == "exact":
        ok = normalise(answer) == normalise(reference)
        return Score(ok, float(ok))
    if scorer == "contains":
        ref = normalise(reference)
        ok = bool(ref) and ref in normalise(answer)
        return Score(ok, float(ok))
    if scorer == "regex":
        try:
            ok = re.search(reference, answer, re.I | re.S) is not None
        except re.error as exc:
            return Score(False, 0.0, f"bad regex in the reference: {exc}")
        return Score(ok, float(ok))
    if scorer == "numeric":
        want = numbers(reference)
        got = numbers(answer)
        if not want:
            return Score(False, 0.0, "the reference holds no number")
        if not got:
            return Score(False, 0.0, "no number in the answer")
        a, b = got[-1], want[-1]
        ok = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return Score(ok, float(ok), f"answer {a:g}, reference {b:g}")
    if scorer == "json":
        try:
            value = json.loads(_strip_fence(answer))
        except ValueError as exc:
            return Score(False, 0.0, f"not JSON: {exc}")
        try:
            ref = json.loads(_strip_fence(reference))
        except ValueError:
            return Score(True, 1.0, "valid JSON")
        ok = value == ref
        return Score(ok, float(ok), "valid JSON" + ("" if ok else ", differs from the reference"))
    raise EvalError(f"unknown scorer {scorer!r}; use one of {', '.join(SCORERS)}")


# A scorer the caller supplies: (items, answers) -> one Score per item (the judge batches its requests).
BatchScorer = Callable[[list[EvalItem], list[str]], list[Score]]


# --------------------------------------------------------------------------- models

@dataclass
class ModelSpec:
    name: str  # the column name in tables: base, RUN, merged:RUN, or the base's name
    kind: str  # base | adapter | merged | model
    path: str = ""  # run dir (adapter), merged dir, or a base reference


def resolve_eval_set(on: str | None, splits_dir: Path, specs: list[ModelSpec]) -> Path:
    """The eval set `studio eval --on` (and the Evals screen's form) names: a path, a split name under
    `splits_dir` (WORKSPACE/splits), or, when `on` is empty, the split of the first adapter among `specs`."""
    from .config import load_run_config
    from .errors import SplitNotFound

    if on:
        p = Path(on)
        if p.exists():
            return p.resolve()
        named = splits_dir / on
        if named.is_dir():
            return named
        raise SplitNotFound(f"eval set {on!r} not found: neither a path nor {named}; give a split name, a split "
                            "folder or a data file")
    for spec in specs:
        if spec.kind == "adapter":
            return Path(load_run_config(spec.path).data.split)
    raise SplitNotFound("name the eval set with --on SPLIT|FILE (no run among the models to take its split from)")


def resolve_models(names: Iterable[str], runs_dir: Path | None) -> list[ModelSpec]:
    """`base`, run ids (adapters), `merged:RUN`, or anything `base:` accepts."""
    from .rundir import find_run

    specs: list[ModelSpec] = []
    for name in names:
        if name == "base":
            specs.append(ModelSpec("base", "base"))
        elif name.startswith("merged:"):
            run = find_run(runs_dir, name.split(":", 1)[1]) if runs_dir else Path(name.split(":", 1)[1])
            merged = Path(run) / "merged"
            if not (merged / "config.json").is_file():
                raise EvalError(f"{name}: {merged} has no merged model; merge first: studio merge {Path(run).name}")
            specs.append(ModelSpec(f"merged:{Path(run).name}", "merged", str(merged)))
        else:
            run = None
            if runs_dir is not None:
                try:
                    run = find_run(runs_dir, name)
                except TrainingError:
                    run = None
            if run is not None:
                specs.append(ModelSpec(Path(run).name, "adapter", str(run)))
            else:
                specs.append(ModelSpec(name, "model", name))
    if not specs:
        raise EvalError("name at least one model: base, a run, merged:RUN, or a base model")
    return specs


class _Generator:
    """Greedy, batched chat generation for one model (or one adapter of a shared session)."""

    def __init__(self, model: Any, tokenizer: Any, device: str, lock: threading.Lock, context: Callable[[], Any]):
        self.model, self.tokenizer, self.device, self.lock, self.context = model, tokenizer, device, lock, context

    def answer(self, batch: list[EvalItem], max_new_tokens: int) -> list[tuple[str, int]]:
        import torch

        from .data import eos_ids

        tok = self.tokenizer
        texts = [tok.apply_chat_template(it.messages, tokenize=False, add_generation_prompt=True) for it in batch]
        side = tok.padding_side
        tok.padding_side = "left"  # decoder-only batches pad on the left so every answer starts at the end
        try:
            enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        finally:
            tok.padding_side = side
        stops = sorted(eos_ids(tok, _stop_ids(self.model, tok)))
        with self.lock, self.context(), torch.no_grad():
            out = self.model.generate(input_ids=enc["input_ids"].to(self.device),
                                      attention_mask=enc["attention_mask"].to(self.device),
                                      max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                                      top_k=None, eos_token_id=stops, pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        answers = []
        for ids in new:
            cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
            # an answer cut by max_new_tokens can end inside a multi-byte character: drop the U+FFFD
            answers.append((tok.decode(ids[:cut], skip_special_tokens=True).rstrip("\ufffd").strip(), cut))
        return answers


def _stop_ids(model: Any, tok: Any) -> list[int]:
    ids: list[int] = []
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += [gen] if isinstance(gen, int) else list(gen or [])
    im_end = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else None
    if isinstance(im_end, int):
        ids.append(im_end)
    return ids


def _generators(specs: list[ModelSpec], *, device: str | None, base: str | None):
    """(spec, generator) pairs. Adapters of runs that share a base load once (one PEFT model with
    every adapter; `base` is that model with adapters off); merged and named models load alone."""
    import contextlib

    from .inference import load_session
    from .loading import load_model, load_tokenizer, pick_device, pick_precision

    device = pick_device(device)
    adapters = [s for s in specs if s.kind == "adapter"]
    out: list[tuple[ModelSpec, _Generator]] = []
    session = load_session([s.path for s in adapters], device=device) if adapters else None
    for spec in specs:
        if spec.kind == "adapter":
            assert session is not None

            def ctx(name=spec.name, s=session):
                s.model.set_adapter(name)
                return contextlib.nullcontext()

            out.append((spec, _Generator(session.model, session.tokenizer, device, session.lock, ctx)))
        elif spec.kind == "base" and session is not None and session.is_peft:
            def base_ctx(s: Any = session) -> Any:
                return s.model.disable_adapter()

            out.append((spec, _Generator(session.model, session.tokenizer, device, session.lock, base_ctx)))
        else:
            ref = spec.path
            if spec.kind == "base":
                if not base:
                    raise EvalError("`base` needs a run to take its base from, or name the base model itself "
                                    "(e.g. smollm2-135m-instruct)")
                ref = base
            from .models import TINY, resolve_base

            path = ref if spec.kind == "merged" or ref == TINY else resolve_base(ref, fetch=True)
            precision = pick_precision("auto", device)
            model = load_model(path, precision=precision, device=device)
            out.append((spec, _Generator(model, load_tokenizer(path), device, threading.Lock(),
                                         contextlib.nullcontext)))
    return out


# --------------------------------------------------------------------------- running

@dataclass
class ModelSummary:
    name: str
    kind: str
    n: int = 0
    correct: int = 0
    mean_score: float = 0.0
    seconds: float = 0.0
    answer_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def items_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0


@dataclass
class EvalResult:
    eval_id: str
    out_dir: Path | None
    source: str
    part: str
    scorer: str
    models: list[ModelSummary]
    items: list[dict[str, Any]]
    cancelled: bool = False

    def summary(self) -> dict[str, Any]:
        return {"eval_id": self.eval_id, "source": self.source, "part": self.part, "scorer": self.scorer,
                "items": len(self.items), "cancelled": self.cancelled,
                "models": [{**asdict(m), "accuracy": round(m.accuracy, 4), "items_per_s": round(m.items_per_s, 3),
                            "mean_score": round(m.mean_score, 4), "seconds": round(m.seconds, 2)}
                           for m in self.models]}


Progress = Callable[[int, int, str], None]  # (answers done, answers total, model name)


def run_eval(source: str | Path, models: list[ModelSpec], *, scorer: str = "contains", part: str = "val",
             limit: int | None = None, max_new_tokens: int = 128, batch_size: int = 8, device: str | None = None,
             base: str | None = None, out_dir: Path | None = None, eval_id: str | None = None,
             extra_scorers: dict[str, BatchScorer] | None = None, progress: Progress | None = None,
             cancel: threading.Event | None = None, items: list[EvalItem] | None = None) -> EvalResult:
    """Answer and score every item with every model; write the results to `out_dir` when given."""
    from .extras import require_train

    require_train("an eval")
    if scorer not in SCORERS:
        raise EvalError(f"unknown scorer {scorer!r}; use one of {', '.join(SCORERS)}")
    batch_scorer = (extra_scorers or {}).get(scorer)
    if scorer == "judge" and batch_scorer is None:
        raise EvalError("the judge scorer needs a provider: run it through `studio eval --scorer judge --provider NAME`")
    items = items if items is not None else load_items(source, part=part, limit=limit)
    if Path(source).is_file():
        part = "all rows"  # a data file has no parts
    eval_id = eval_id or time.strftime("eval-%Y%m%d-%H%M%S")
    if base is None:
        base = _base_of(models)
    gens = _generators(models, device=device, base=base)
    rows: list[dict[str, Any]] = [{"id": it.id, "messages": it.messages, "reference": it.reference,
                                   "source": it.source, "answers": {}} for it in items]
    summaries: list[ModelSummary] = []
    total, done = len(items) * len(gens), 0
    cancelled = False
    for spec, gen in gens:
        summ = ModelSummary(spec.name, spec.kind)
        answers: list[str] = []
        for start in range(0, len(items), max(1, batch_size)):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            batch = items[start:start + batch_size]
            t0 = time.perf_counter()
            got = gen.answer(batch, max_new_tokens)
            dt = time.perf_counter() - t0
            summ.seconds += dt
            for k, (text, ntok) in enumerate(got):
                rows[start + k]["answers"][spec.name] = {"text": text, "tokens": ntok,
                                                         "seconds": round(dt / len(batch), 4)}
                summ.answer_tokens += ntok
                answers.append(text)
            done += len(batch)
            if progress:
                progress(done, total, spec.name)
        scored_items = items[:len(answers)]
        scores = (batch_scorer(scored_items, answers) if batch_scorer
                  else [score_answer(scorer, a, it.reference) for it, a in zip(scored_items, answers)])
        for k, sc in enumerate(scores):
            rows[k]["answers"][spec.name].update({"correct": sc.correct, "score": sc.score, "detail": sc.detail})
            summ.correct += int(sc.correct)
            summ.cost_usd += sc.cost_usd
        summ.n = len(scores)
        summ.mean_score = sum(s.score for s in scores) / len(scores) if scores else 0.0
        summaries.append(summ)
        if cancelled:
            break
    result = EvalResult(eval_id, out_dir, str(source), part, scorer, summaries, rows, cancelled)
    if out_dir is not None:
        write_results(result, out_dir)
    return result


def _base_of(models: list[ModelSpec]) -> str | None:
    from .inference import describe_run

    for spec in models:
        if spec.kind in ("adapter", "merged"):  # a merged model's run is its folder's parent
            run = describe_run(spec.path if spec.kind == "adapter" else Path(spec.path).parent)
            return run.base_path if run.untrained_base else run.base
    for spec in models:
        if spec.kind == "model":
            return spec.path
    return None


def write_results(result: EvalResult, out_dir: Path) -> Path:
    """items.jsonl and summary.json into out_dir (written to .partial files, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_items = out_dir / "items.jsonl.partial"
    with open(tmp_items, "w", encoding="utf-8") as f:
        for row in result.items:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp_items.replace(out_dir / "items.jsonl")
    tmp_sum = out_dir / "summary.json.partial"
    tmp_sum.write_text(json.dumps(result.summary(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp_sum.replace(out_dir / "summary.json")
    return out_dir


def eval_dir(run_dir: Path, eval_id: str) -> Path:
    return Path(run_dir) / EVALS_DIR / eval_id


def list_evals(run_dir: Path) -> list[dict[str, Any]]:
    """The summaries of a run's evals, newest first."""
    found = []
    # by time, not name: `end` (eval.at_end) and `eval-DATE` ids do not sort together
    for f in sorted((Path(run_dir) / EVALS_DIR).glob("*/summary.json"), key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            found.append({**json.loads(f.read_text(encoding="utf-8")), "path": str(f.parent)})
        except (OSError, ValueError):
            continue
    return found


def read_items(eval_path: Path) -> list[dict[str, Any]]:
    p = Path(eval_path) / "items.jsonl"
    if not p.is_file():
        raise EvalError(f"{eval_path}: no items.jsonl; is this an eval folder (RUN/evals/EVAL_ID)?")
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def disagreements(rows: list[dict[str, Any]], right: str, wrong: str) -> list[dict[str, Any]]:
    """Items that model `right` got right and model `wrong` got wrong ("base right, adapter wrong")."""
    return [r for r in rows if r["answers"].get(right, {}).get("correct") and
            r["answers"].get(wrong, {}).get("correct") is False]


def format_table(result: EvalResult | dict[str, Any]) -> str:
    summary = result.summary() if isinstance(result, EvalResult) else result
    lines = [f"eval {summary['eval_id']}: {summary['items']} items from {summary['source']} "
             f"({summary['part']}), scorer {summary['scorer']}" + (" - CANCELLED, partial" if summary.get("cancelled") else ""),
             f"{'model':<40} {'correct':>9} {'accuracy':>9} {'score':>6} {'items/s':>8}"]
    for m in summary["models"]:
        cost = f"  ${m['cost_usd']:.4f}" if m.get("cost_usd") else ""
        lines.append(f"{m['name'][:40]:<40} {m['correct']:>4}/{m['n']:<4} {m['accuracy']:>9.1%} {m['mean_score']:>6.3f} "
                     f"{m['items_per_s']:>8.2f}{cost}")
    return "\n".join(lines)
