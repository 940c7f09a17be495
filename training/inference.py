"""Generate with a finished run: its base, its adapter, or both side by side.

`studio chat`, the studio's Playground, `studio serve` and `studio merge` all load runs through
here, so a run is read the same way everywhere: `describe_run` finds the base and the adapter from
the run directory (docs/contracts.md), `load_session` loads ONE base with the adapters of one or
more runs (PEFT adapter names = run names), and a `ChatSession` generates with the tokenizer's
chat template (ChatML when the tokenizer has none), whole or streamed token by token.

The base answer comes from the same weights with the adapter switched off (PEFT's
`disable_adapter()`), so a side-by-side comparison never loads the base twice. A session holds a
lock around generation: switching adapters is model-wide state, so two requests must not
interleave.

Errors a user can cause raise `RunUnusable` (a `TrainingError`: the message says what and what to
do); the studio turns it into its own clean error.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeGuard

from .config import TINY
from .errors import TrainingError

BASE = None  # pass adapter=BASE (None) to generate with the adapters switched off

class RunUnusable(TrainingError):
    """A run directory (or a set of runs) cannot be loaded as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- runs on disk

@dataclass(frozen=True)
class RunModel:
    """What a finished run holds, read from its directory without loading any weights."""

    run_dir: Path
    name: str  # the run directory's name: the adapter's name in a session and in `serve`
    base: str  # the base as the config names it (hub id, folder, or `tiny`)
    base_path: str  # what `from_pretrained` loads for the base (RUN_DIR/base for tiny)
    method: str  # lora | qlora | full
    adapter_dir: Path | None  # PEFT adapter (lora, qlora)
    model_dir: Path | None  # full fine-tune weights
    config: Any = field(default=None, compare=False, repr=False)  # training.config.TrainConfig

    @property
    def untrained_base(self) -> bool:
        return self.base == TINY

    @property
    def weights_dir(self) -> Path:
        """The trained weights: model_dir for a full fine-tune, else adapter_dir."""
        folder = self.model_dir if self.method == "full" else self.adapter_dir
        if folder is None:  # describe_run sets the one that matches the method
            raise RunUnusable(f"{self.run_dir}: no trained weights")
        return folder


def describe_run(run_dir: Path | str) -> RunModel:
    """Read a run directory: its base, method and where the adapter (or full model) is."""
    from .config import load_run_config
    from .recipe import ADAPTER_DIR, MODEL_DIR, base_path

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunUnusable(f"{run_dir}: no config.yaml; is this a run directory? (runs live in WORKSPACE/runs/RUN_ID/; "
                          f"`studio runs` lists them)")
    config = load_run_config(run_dir)
    adapter_dir = run_dir / ADAPTER_DIR
    model_dir = run_dir / MODEL_DIR
    has_adapter = (adapter_dir / "adapter_config.json").is_file()
    has_model = (model_dir / "config.json").is_file()
    if not has_adapter and not has_model:
        state = _run_state(run_dir)
        hint = f" (its state is {state!r})" if state else ""
        raise RunUnusable(
            f"{run_dir}: no {ADAPTER_DIR}/ or {MODEL_DIR}/ yet{hint}; wait for the run to finish "
            f"(or resume it: studio train --resume {run_dir.name})")
    full = config.method == "full" or not has_adapter
    return RunModel(
        run_dir=run_dir, name=run_dir.name, base=config.base, base_path=base_path(run_dir, config),
        method="full" if full else config.method,
        adapter_dir=None if full else adapter_dir, model_dir=model_dir if full else None, config=config,
    )


def _run_state(run_dir: Path) -> str | None:
    from .rundir import has_status, read_status

    return read_status(run_dir).state if has_status(run_dir) else None


def base_identity(run: RunModel) -> str:
    """What makes two runs' bases the same. A hub id or folder is itself; the built-in tiny base is
    rebuilt per run (RUN_DIR/base), so two tiny runs share a base when its files are identical
    (same seed, same split text)."""
    if not run.untrained_base:
        return str(Path(run.base_path).resolve()) if Path(run.base_path).exists() else run.base_path
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        f = Path(run.base_path) / name
        digest.update(name.encode() + (f.read_bytes() if f.is_file() else b"-"))
    return "tiny:" + digest.hexdigest()[:16]


# --------------------------------------------------------------------------- loading

def load_tokenizer(path: str | Path):
    """The tokenizer saved at `path` with the trainer's rules (training/loading.py)."""
    from .loading import load_tokenizer as _load
    from .models import ModelUnavailable

    try:
        return _load(path)
    except ModelUnavailable as exc:
        raise RunUnusable(str(exc)) from None


def _has_tokenizer(folder: Path | None) -> TypeGuard[Path]:
    return folder is not None and any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def pick_device(device: str | None = None) -> str:
    from .loading import pick_device as _pick

    return _pick(device)


def pick_dtype(device: str, dtype: str | None = None):
    """`dtype` as asked (merge may want bf16 on a CPU); else bf16 on a GPU that has it, fp16 on other
    GPUs, fp32 on a CPU (CPU half precision is slow and lossy)."""
    from .loading import PRECISIONS, SHORT, pick_precision, torch_dtype
    from .models import ModelUnavailable

    if dtype and dtype not in PRECISIONS:
        raise RunUnusable(f"unknown dtype {dtype!r}; use bf16, fp16 or fp32")
    try:
        return torch_dtype(SHORT[PRECISIONS[dtype]] if dtype else pick_precision("auto", device))
    except ModelUnavailable as exc:
        raise RunUnusable(str(exc)) from None


def load_base_model(base_path: str, *, device: str, dtype: Any, quantize_4bit: bool = False):
    """The base model in `dtype` on `device`, or in 4-bit (QLoRA's nf4) when asked; ready for generate."""
    from .loading import SHORT, bnb_4bit, load_model
    from .models import ModelUnavailable

    precision = SHORT[str(dtype).replace("torch.", "")]
    quant = bnb_4bit(compute_precision=precision) if quantize_4bit else None
    try:
        return load_model(base_path, precision=precision, device=device, quantize_4bit=quant)
    except ModelUnavailable as exc:
        raise RunUnusable(str(exc)) from None


def ensure_base(run: "RunModel") -> None:
    """Fetch a registry base or convert a .gguf base into the store when it is not there yet."""
    if run.untrained_base or run.method == "full":
        return
    from .models import ModelUnavailable, resolve_base

    try:
        resolve_base(run.base, fetch=True)
    except ModelUnavailable as exc:
        raise RunUnusable(str(exc)) from None


def load_session(runs: Path | str | list, *, device: str | None = None, dtype: str | None = None,
                 quantize_4bit: bool | None = None) -> "ChatSession":
    """Load one base and the adapters of `runs` (all must share that base).

    `quantize_4bit=None` loads the base in 4-bit only for QLoRA runs on a GPU (as they were
    trained); on a CPU everything loads in fp32.
    """
    from .extras import require_train

    require_train("loading a model")
    from peft import PeftModel

    run_list = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not run_list:
        raise RunUnusable("name at least one run")
    described = [describe_run(r) for r in run_list]
    names = [d.name for d in described]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RunUnusable(f"two runs share the name {duplicates[0]!r}; adapters are named by run, rename one folder")
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    first = described[0]
    ensure_base(first)

    if first.method == "full":
        if len(described) > 1:
            raise RunUnusable(
                f"{first.run_dir}: a full fine-tune is a whole model, not an adapter; load it alone")
        tokenizer = load_tokenizer(first.model_dir if _has_tokenizer(first.model_dir) else first.base_path)
        tuned = load_base_model(str(first.model_dir), device=device, dtype=torch_dtype)
        return ChatSession(model=tuned, tokenizer=tokenizer, base=first.base, runs=described, device=device,
                           base_loader=lambda: load_base_model(first.base_path, device=device, dtype=torch_dtype))

    identity = base_identity(first)
    mixed = [d for d in described if d.method == "full" or base_identity(d) != identity]
    if mixed:
        other = mixed[0]
        raise RunUnusable(
            f"runs {first.name!r} and {other.name!r} have different bases ({first.base!r} vs "
            f"{other.base!r}{', a full fine-tune' if other.method == 'full' else ''}); one session holds ONE base: "
            f"load them separately")
    if quantize_4bit is None:
        quantize_4bit = device.startswith("cuda") and first.method == "qlora"
    tokenizer = load_tokenizer(first.adapter_dir if _has_tokenizer(first.adapter_dir) else first.base_path)
    base_model = load_base_model(first.base_path, device=device, dtype=torch_dtype, quantize_4bit=quantize_4bit)
    model = PeftModel.from_pretrained(base_model, str(first.adapter_dir), adapter_name=first.name)
    for other in described[1:]:
        model.load_adapter(str(other.adapter_dir), adapter_name=other.name)
    model.set_adapter(first.name)
    model.eval()
    return ChatSession(model=model, tokenizer=tokenizer, base=first.base, runs=described, device=device)


# --------------------------------------------------------------------------- generation

@dataclass
class Completion:
    """One answer: its text and the counts an OpenAI-style `usage` block needs."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # stop (EOS or a stop string) | length (hit max_new_tokens)


class Stream:
    """Text pieces of one answer as they are generated; `completion` is filled once iteration ends.

    Closing the iterator early (a client went away) stops the generation at the next token.
    """

    def __init__(self, pieces: Iterator[str]):
        self._pieces = pieces
        self.completion = Completion()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        self._pieces.close()  # type: ignore[attr-defined]


class ChatSession:
    """One loaded base with named adapters; generates under a lock (adapter switching is global)."""

    def __init__(self, *, model: Any, tokenizer: Any, base: str, runs: list[RunModel], device: str,
                 base_loader: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.base = base
        self.runs = runs
        self.device = device
        self.lock = threading.Lock()
        # Encoding may reset the Rust tokenizer's padding/truncation state, which raises "Already
        # borrowed" when two threads do it at once (serve parses requests concurrently).
        self._tokenizer_lock = threading.Lock()
        self._base_loader = base_loader  # full fine-tunes: the base is a second model, loaded when first asked
        self._base_model = None

    @property
    def adapters(self) -> list[str]:
        return [r.name for r in self.runs]

    @property
    def default_adapter(self) -> str:
        return self.runs[0].name

    @property
    def is_peft(self) -> bool:
        return self._base_loader is None

    # -- prompts

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m.get("content") or ""} for m in messages],
            tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, messages: list[dict]):
        # The template already holds any BOS it wants; adding special tokens again would double it.
        text = self.prompt_text(messages)
        with self._tokenizer_lock:
            enc = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, gen_eos):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id and im_end >= 0:
            ids.add(im_end)
        return sorted(ids)

    # -- model selection

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise RunUnusable(f"no adapter named {adapter!r}; loaded: {', '.join(self.adapters)}")

    def _generation_target(self, adapter: str | None):
        """(model, context manager) that generates as `adapter` (None: the base)."""
        import contextlib

        if not self.is_peft:
            if adapter is None:
                if self._base_model is None:
                    self._base_model = self._base_loader()
                return self._base_model, contextlib.nullcontext()
            return self.model, contextlib.nullcontext()
        if adapter is None:
            return self.model, self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return self.model, contextlib.nullcontext()

    def _gen_kwargs(self, *, max_new_tokens: int, temperature: float, top_p: float, stop: list[str] | None) -> dict:
        kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "eos_token_id": self._eos_ids(),
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        return kwargs

    def _finish(self, text: str, new_ids: list[int], max_new_tokens: int, stop: list[str] | None,
                prompt_tokens: int) -> Completion:
        reason = "length" if len(new_ids) >= max_new_tokens else "stop"
        if new_ids and new_ids[-1] in self._eos_ids():
            reason = "stop"
        for s in stop or []:
            cut = text.find(s)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(new_ids), finish_reason=reason)

    # -- generate

    def generate(self, messages: list[dict], *, adapter: str | None = BASE, max_new_tokens: int = 256,
                 temperature: float = 0.7, top_p: float = 1.0, seed: int | None = None,
                 stop: list[str] | None = None) -> Completion:
        """The whole answer of `adapter` (None: the base) to a chat."""
        import torch

        self._check_adapter(adapter)
        input_ids, attention_mask = self.prompt_ids(messages)
        kwargs = self._gen_kwargs(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop)
        with self.lock:
            model, ctx = self._generation_target(adapter)
            if seed is not None:
                torch.manual_seed(seed)
            with ctx, torch.no_grad():
                out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new_ids = out[0, input_ids.shape[1]:].tolist()
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return self._finish(text, new_ids, max_new_tokens, stop, input_ids.shape[1])

    def stream(self, messages: list[dict], *, adapter: str | None = BASE, max_new_tokens: int = 256,
               temperature: float = 0.7, top_p: float = 1.0, seed: int | None = None,
               stop: list[str] | None = None, cancel: threading.Event | None = None) -> Stream:
        """Like `generate`, but yields text pieces as tokens arrive (for the UI and SSE).
        `cancel`: set it from any thread to end generation at the next token (serve sets it when
        the client hangs up); closing the stream between pieces does the same."""
        self._check_adapter(adapter)
        stream = Stream(iter(()))
        stream._pieces = self._stream_pieces(stream, messages, adapter=adapter, max_new_tokens=max_new_tokens,
                                             temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                                             asked=cancel)
        return stream

    def _stream_pieces(self, stream: Stream, messages, *, adapter, max_new_tokens, temperature, top_p, seed,
                       stop, asked: threading.Event | None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel = threading.Event()  # set here when the consumer is done; the caller's `asked` is only read

        def cancelled() -> bool:
            return cancel.is_set() or (asked is not None and asked.is_set())

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)

        input_ids, attention_mask = self.prompt_ids(messages)
        kwargs = self._gen_kwargs(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop)
        streamer = TokenStreamer(self.tokenizer)
        result: dict[str, Any] = {}

        with self.lock:
            model, ctx = self._generation_target(adapter)
            if seed is not None:
                torch.manual_seed(seed)

            def work() -> None:
                try:
                    with ctx, torch.no_grad():
                        result["out"] = model.generate(
                            input_ids=input_ids, attention_mask=attention_mask, streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancelled()]), **kwargs)
                except BaseException as exc:  # surfaced in the consumer's thread below
                    result["error"] = exc
                    streamer.end()

            thread = threading.Thread(target=work, name="generate", daemon=True)
            thread.start()
            sent = ""  # text already yielded; held back while it may be the start of a stop string
            full = ""
            pieces = iter(streamer)
            exhausted = False
            try:
                for piece in pieces:
                    full += piece
                    visible = _shown_part(full, stop)
                    if visible is None:  # a stop string appeared: stop here
                        cancel.set()
                        break
                    if len(visible) > len(sent):
                        yield visible[len(sent):]
                        sent = visible
                else:
                    exhausted = True
            finally:
                cancel.set()
                # Drain to the end signal so the worker finishes, then wait for it. (Iterating the
                # streamer again after its end signal would block forever.)
                if not exhausted:
                    for _ in pieces:
                        pass
                thread.join()
        if "error" in result:
            raise result["error"]
        new_ids = result["out"][0, input_ids.shape[1]:].tolist() if "out" in result else []
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        stream.completion = self._finish(text, new_ids, max_new_tokens, stop, input_ids.shape[1])
        final = stream.completion.text
        if final.startswith(sent) and len(final) > len(sent):
            yield final[len(sent):]


class TokenStreamer:
    """A transformers streamer that yields text as soon as each token decodes to whole characters.

    transformers' TextIteratorStreamer holds text back until a space or newline, so byte-level or
    CJK output without spaces arrives in one piece at the end. This uses the incremental
    detokenisation of TGI/vLLM instead: decode a small window of recent ids, emit what grew, and
    wait while the tail is an incomplete UTF-8 sequence (U+FFFD).
    """

    _END = object()

    def __init__(self, tokenizer: Any):
        import queue

        self.tokenizer = tokenizer
        self.queue: Any = queue.Queue()
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self._prompt_skipped = False

    def put(self, value: Any) -> None:
        if not self._prompt_skipped:  # generate() first hands over the prompt
            self._prompt_skipped = True
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        text = decode(self.ids[self.prefix_offset:], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.queue.put(text[len(prefix):])
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)

    def end(self) -> None:
        self.queue.put(self._END)

    def __iter__(self) -> "TokenStreamer":
        return self

    def __next__(self) -> str:
        item = self.queue.get()
        if item is self._END:
            raise StopIteration
        return item


def _shown_part(text: str, stop: list[str] | None) -> str | None:
    """The part of `text` safe to show now: a tail that may begin a stop string is held back.
    None when a stop string has appeared."""
    if not stop:
        return text
    for s in stop:
        if s and s in text:
            return None
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold]


# --------------------------------------------------------------------------- side by side

def chat_pair(session: ChatSession, messages: list[dict], *, adapter: str | None = None,
              **gen: Any) -> tuple[str, str]:
    """(base answer, adapter answer) to the same chat; `adapter` defaults to the session's first run.

    Pass `seed=` for reproducible sampling: both answers then start from the same random state.
    """
    adapter = adapter or session.default_adapter
    base_text = session.generate(messages, adapter=BASE, **gen).text
    tuned_text = session.generate(messages, adapter=adapter, **gen).text
    return base_text, tuned_text


def chat_pair_stream(session: ChatSession, messages: list[dict], *, adapter: str | None = None,
                     **gen: Any) -> Iterator[tuple[str, str]]:
    """Yield ("base", piece) ... then ("adapter", piece) ... as tokens arrive (one model: in turn)."""
    adapter = adapter or session.default_adapter
    for side, name in (("base", BASE), ("adapter", adapter)):
        for piece in session.stream(messages, adapter=name, **gen):
            yield side, piece
