"""training/sft.py: TRL's numbers without TRL's host syncs between micro-batches.

Each run trains a tiny random Llama for 4 steps with 2 micro-batches per step, an eval every 2,
packing as the presets do. The deferred path must log what TRL's own compute_loss logs (loss,
entropy, token accuracy, token count, eval loss), and no tensor may become a Python number inside
compute_loss or the Trainer's per-micro-batch NaN filter: those are the waits a CUDA run pays.
"""
from __future__ import annotations

import collections
import contextlib
import traceback
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

from training import recipe  # noqa: E402
from training.config import load_config  # noqa: E402
from training.sft import trl_supported  # noqa: E402

CONVERSIONS = ("item", "__bool__", "tolist", "__float__", "__int__")


@pytest.fixture(autouse=True)
def _sync_free_head_on(monkeypatch):
    """The studio's loss head is on by default (training/sft.py); these tests hold it to TRL's
    numbers, so they pin it on whatever the default (TRL's own head runs with defer=False)."""
    from training import sft

    monkeypatch.setattr(sft, "SYNC_FREE_HEAD", True)


def _train(tmp_path: Path, name: str, *, defer: bool, spy=None, precision: str = "fp32", **trainer_kw):
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback

    cfg = load_config(preset="fast", overrides={"base": "tiny", "train.defer_metrics": defer, "train.micro_batch_size": 2,
                                                "train.grad_accum": 2, "data.max_length": 64,
                                                "train.gradient_checkpointing": False})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    vocab = {f"t{i}": i for i in range(300)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
                                  eos_token="t1", pad_token="t2")
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 300, (int(torch.randint(10, 40, (1,), generator=g)),), generator=g).tolist()}
            for _ in range(60)]
    captured: list[dict] = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            captured.append(dict(logs or {}))

    args = recipe.sft_args(cfg, tmp_path / name, precision, has_eval=True, overrides=dict(
        max_steps=4, logging_steps=1, eval_steps=2, save_strategy="no", learning_rate=1e-2))
    trainer = recipe.make_trainer(cfg, model=model, args=args, train_dataset=Dataset.from_list(rows[:48]),
                                  eval_dataset=Dataset.from_list(rows[48:]), processing_class=tok,
                                  peft_config=recipe.lora_config(cfg), callbacks=[Capture()], **trainer_kw)
    with spy if spy is not None else contextlib.nullcontext():
        trainer.train()
    return trainer, captured


class ConversionSpy:
    """Records where tensors become Python values (each one a host sync on a GPU)."""

    def __init__(self) -> None:
        self.sites: collections.Counter = collections.Counter()
        self._orig = {}

    def __enter__(self):
        for name in CONVERSIONS:
            orig = self._orig[name] = getattr(torch.Tensor, name)

            def wrapped(t, *a, _orig=orig, _name=name, **k):
                frames = traceback.extract_stack(limit=6)[:-1]
                self.sites[(_name, tuple(f"{Path(f.filename).name}:{f.name}" for f in frames))] += 1
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, wrapped)

        for name in ("tensor", "as_tensor"):  # a Python number copied to the device blocks like a sync
            orig = self._orig[f"torch.{name}"] = getattr(torch, name)

            def made(data, *a, _orig=orig, _name=name, **k):
                if not isinstance(data, torch.Tensor):
                    frames = traceback.extract_stack(limit=6)[:-1]
                    self.sites[(f"torch.{_name}", tuple(f"{Path(f.filename).name}:{f.name}" for f in frames))] += 1
                return _orig(data, *a, **k)

            setattr(torch, name, made)
        return self

    def __exit__(self, *exc):
        for name, orig in self._orig.items():
            if name.startswith("torch."):
                setattr(torch, name[len("torch."):], orig)
            else:
                setattr(torch.Tensor, name, orig)

    def count(self, *callers: str) -> int:
        """Conversions made directly by one of `callers` ("file.py:function"; a comprehension
        counts as the function it is written in)."""
        def caller(frames):
            return next((f for f in reversed(frames) if not f.split(":")[-1].startswith("<")), frames[-1])

        return sum(n for (_, frames), n in self.sites.items() if caller(frames).endswith(callers))


def test_the_installed_trl_takes_the_deferred_path():
    """A TRL outside TRL_RANGE falls back to its own compute_loss: this says when that happens."""
    assert trl_supported(), "review training/sft.py against this TRL's SFTTrainer.compute_loss, then widen TRL_RANGE"


@pytest.mark.parametrize("grad_in_forward", [False, True], ids=["trl-kernel", "grad-in-forward"])
def test_deferred_metrics_log_what_trl_logs(tmp_path, monkeypatch, grad_in_forward):
    from training import logprob_head

    monkeypatch.setattr(logprob_head, "GRAD_IN_FORWARD", grad_in_forward)
    calls = []
    apply = logprob_head.LogProbsGradInForward.apply
    monkeypatch.setattr(logprob_head.LogProbsGradInForward, "apply", lambda *a: calls.append(1) or apply(*a))
    fast, deferred_logs = _train(tmp_path, "deferred", defer=True)
    assert len(calls) == (4 * 2 if grad_in_forward else 0)  # every training micro-batch; eval needs no gradient
    slow, trl_logs = _train(tmp_path, "trl", defer=False)
    assert fast.deferred_batches > 4 * 2  # every train micro-batch, and the eval batches
    assert fast.sync_free_heads == fast.deferred_batches  # the loss head without syncs, TRL's numbers
    assert slow.deferred_batches == 0
    keys = ("loss", "entropy", "mean_token_accuracy", "num_tokens", "eval_loss", "eval_entropy",
            "eval_mean_token_accuracy", "eval_num_tokens", "grad_norm")
    assert len(deferred_logs) == len(trl_logs)
    seen = set()
    for a, b in zip(deferred_logs, trl_logs):
        for k in keys:
            assert (k in a) == (k in b), k
            if k in a:
                seen.add(k)
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (k, a, b)
    assert {"loss", "entropy", "mean_token_accuracy", "num_tokens", "eval_loss", "eval_entropy"} <= seen
    counts = [r["num_tokens"] for r in deferred_logs if "loss" in r]
    assert len(counts) == 4 and 0 < counts[0] < counts[1] < counts[2] < counts[3]  # a running count, every step


def test_no_host_sync_inside_compute_loss_or_the_nan_filter(tmp_path):
    spy = ConversionSpy()
    _, logs = _train(tmp_path, "spy", defer=True, spy=spy)
    assert spy.count("sft_trainer.py:compute_loss", "sft.py:compute_loss") == 0, spy.sites
    assert spy.count("trainer.py:_run_epoch") == 0, spy.sites  # isnan(loss) or isinf(loss), every micro-batch
    assert spy.count("sft.py:_flush_metrics") == sum(1 for r in logs if "loss" in r or "eval_loss" in r)

    trl_spy = ConversionSpy()  # the same count on TRL's path finds them: the spy can see what it tests
    _train(tmp_path, "spy-trl", defer=False, spy=trl_spy)
    assert trl_spy.count("sft_trainer.py:compute_loss") >= 4 * 2 * 4
    assert trl_spy.count("trainer.py:_run_epoch") >= 4 * 2


def test_other_loss_paths_stay_trls(tmp_path):
    """A compute_loss_func (or label smoothing, an aux loss, ...) is TRL's own path, unchanged."""
    calls = []

    def loss_func(outputs, labels, num_items_in_batch=None):
        calls.append(1)
        logits = outputs.logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100)

    trainer, logs = _train(tmp_path, "func", defer=True, compute_loss_func=loss_func)
    assert calls and trainer.deferred_batches == 0
    assert all(r.get("entropy") is not None for r in logs if "loss" in r)



class DataDependentOps:
    """Counts the ops whose output size depends on tensor values (nonzero, masked_select, boolean
    indexing): on a GPU each one makes the host wait for the GPU."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        counts = self.counts = collections.Counter()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.overloadpacket.__name__
                if name in ("nonzero", "masked_select") or (name == "index" and any(
                        isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))):
                    counts[name] += 1
                return func(*args, **(kwargs or {}))

        self.mode = Mode()


def _count_in_training_steps(tmp_path, name, monkeypatch, *, defer):
    from transformers import Trainer

    ops = DataDependentOps()
    step = Trainer.training_step

    def counted(self, *a, **k):
        with ops.mode:
            return step(self, *a, **k)

    monkeypatch.setattr(Trainer, "training_step", counted)
    trainer, _ = _train(tmp_path, name, defer=defer)
    return trainer, ops.counts


def test_the_loss_head_waits_for_no_data_dependent_op(tmp_path, monkeypatch):
    """On a GPU, TRL's fused head picks the labelled positions by boolean indexing (and its
    backward by masked_select): host syncs. The studio's head takes the count from the collator."""
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: True)  # TRL's GPU choice: score only labelled positions
    trainer, ours = _count_in_training_steps(tmp_path, "sync-free", monkeypatch, defer=True)
    assert trainer.sync_free_heads >= 4 * 2 and sum(ours.values()) == 0, ours
    _, trls = _count_in_training_steps(tmp_path, "trl-head", monkeypatch, defer=False)
    assert trls["index"] >= 4 * 2 * 2, trls  # hidden[mask] and labels[mask]: the counter sees what it tests


def test_the_sync_free_head_runs_under_the_runs_autocast(tmp_path, monkeypatch):
    """accelerate puts bf16 autocast on the prepared model's forward; the studio's head calls the
    backbone past it, so it must enter the same autocast (else the LoRA branches run in fp32)."""
    import trl.trainer.utils as trl_utils

    from training import logprob_head

    monkeypatch.setattr(logprob_head, "GRAD_IN_FORWARD", False)  # TRL's function on both sides: it records
    seen: dict[str, list[bool]] = {"ours": [], "trl": []}
    apply = trl_utils._ChunkedLogProbFunction.apply
    side = ["ours"]

    def recording(*a, **k):
        seen[side[0]].append(torch.is_autocast_enabled("cpu"))
        return apply(*a, **k)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", recording)
    trainer, _ = _train(tmp_path, "bf16-ours", defer=True, precision="bf16")
    assert trainer.sync_free_heads > 0
    side[0] = "trl"
    _train(tmp_path, "bf16-trl", defer=False, precision="bf16")
    assert seen["trl"] and all(seen["trl"]), "TRL's head no longer runs under autocast: revisit this test"
    assert seen["ours"] and all(seen["ours"])
