"""Models out (issue 18): `studio export-model` writes a GGUF that transformers loads back with the
merged model's logits, an Ollama Modelfile equivalent to the chat template, a vLLM command for the
adapter; and a run's base is named relative to the workspace, so moving the workspace keeps chat
and merge working."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests._tiny_lora import build_adapter, build_base, make_run

pytest.importorskip("peft")
pytest.importorskip("gguf")

PROMPT = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog."}]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace holding one finished tiny LoRA run (llama architecture, untied head, 2 KV heads of 4)."""
    root = tmp_path_factory.mktemp("export") / "ws"
    make_run(root / "runs", "run-a", build_base(root / "models" / "tiny"), seed=1)
    return root


def _ids(model_dir, messages=PROMPT):
    import torch

    from training.inference import load_tokenizer

    tok = load_tokenizer(model_dir)
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


def _logits_diff(merged_dir, gguf_path):
    """(max |logit difference|, max |logit|) of the GGUF, loaded as a user would, vs the merged folder."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = _ids(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                  dtype=torch.float32).eval()
    with torch.no_grad():
        want, got = merged(input_ids=ids).logits, loaded(input_ids=ids).logits
    return (got - want).abs().max().item(), want.abs().max().item()


def _tensor_types(gguf_path) -> set[str]:
    from gguf import GGUFReader

    return {t.tensor_type.name for t in GGUFReader(str(gguf_path)).tensors}


# ---------------------------------------------------------------- GGUF: tiny llama run

def test_export_model_f16_through_the_cli_loads_back_with_the_merged_logits(ws, capsys):
    from studio.cli import main

    code = main(["-w", str(ws), "export-model", "run-a", "--gguf", "--quant", "f16"])
    text = capsys.readouterr().out
    run = ws / "runs" / "run-a"
    gguf_path = run / "export" / "run-a-f16.gguf"
    assert code == 0, text
    assert gguf_path.is_file() and "max |logit difference| GGUF vs merged" in text and "greedy 8/8" in text
    assert _tensor_types(gguf_path) == {"F16", "F32"}  # 2-D weights f16, norms f32
    diff, scale = _logits_diff(run / "merged", gguf_path)  # the merge went to RUN/merged, as studio merge does
    assert diff < 5e-3 * max(1.0, scale)  # measured 6.3e-4 (largest |logit| 0.43)
    record = json.loads((run / "export" / "export.json").read_text())
    assert record["check"]["ok"] and record["check"]["tokens_match"] and record["gguf"]["quant"] == "f16"
    assert record["versions"]["gguf"] and record["versions"]["transformers_gguf_min"]


def test_export_q8_0_is_quantised_and_within_a_looser_tolerance(ws):
    from training.gguf_export import export_run

    result = export_run(ws / "runs" / "run-a", quant="q8_0", device="cpu")
    assert result.check.ok and result.check.tokens_match and result.check.greedy_same == 8
    assert _tensor_types(result.gguf.path) == {"Q8_0", "F32"}
    f16 = ws / "runs" / "run-a" / "export" / "run-a-f16.gguf"
    if f16.is_file():
        assert result.gguf.size_bytes < 0.7 * f16.stat().st_size
    diff, scale = _logits_diff(result.merged_dir, result.gguf.path)
    assert diff < 3e-2 * max(1.0, scale)  # measured 9.3e-3
    assert 1e-5 < result.check.max_abs_diff <= result.check.tolerance  # really quantised, yet close


def test_llama_q_k_permutation_is_the_one_transformers_undoes():
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from training.gguf_export import llama_permute

    w = np.random.default_rng(0).standard_normal((2 * 3 * 8, 16)).astype(np.float32)  # 3 KV heads of dim 16
    undo = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 3})
    permuted = llama_permute(w, 6, 3)
    assert not np.array_equal(permuted, w)
    assert np.array_equal(undo.process(permuted, "blk.0.attn_k.weight").weights, w)
    q = np.random.default_rng(1).standard_normal((6 * 16, 16)).astype(np.float32)
    assert np.array_equal(undo.process(llama_permute(q, 6, 6), "blk.0.attn_q.weight").weights, q)


def test_qwen2_with_attention_biases_exports_and_loads_back(tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training.gguf_export import check_gguf, write_gguf
    from training.inference import load_tokenizer

    folder = build_base(tmp_path / "tiny")  # for its tokenizer
    tok = load_tokenizer(folder)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok) + 24, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rope_theta=1e6, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)  # Qwen2's q/k/v biases, non-zero so a lost one shows
    qwen = tmp_path / "qwen"
    model.save_pretrained(qwen)
    tok.save_pretrained(qwen)
    written = write_gguf(qwen, tmp_path / "out" / "qwen-f16.gguf", quant="f16")
    assert written.arch == "qwen2" and written.tensor_types["F32"] == 2 * 2 + 3 * 2 + 1  # norms, biases, final norm
    check = check_gguf(qwen, written.path, quant="f16")
    assert check.ok and check.tokens_match and check.greedy_same == check.greedy_of
    assert check.max_abs_diff < 5e-3 * max(1.0, check.max_abs_logit)


def test_a_run_that_cannot_be_exported_says_why(tmp_path):
    from training.gguf_export import ExportUnusable, vllm_rank, write_gguf

    folder = build_base(tmp_path / "tiny")
    with pytest.raises(ExportUnusable, match="unknown quantisation"):
        write_gguf(folder, tmp_path / "x.gguf", quant="q4_k")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ExportUnusable, match="no tokenizer.json"):
        write_gguf(folder, tmp_path / "x.gguf", quant="f16")
    assert not list(tmp_path.glob("*.gguf*"))  # nothing half-written under the name
    assert [vllm_rank(r) for r in (4, 8, 12, 64, 300)] == [8, 8, 16, 64, 320]
    with pytest.raises(ExportUnusable, match="above vLLM"):
        vllm_rank(1024)


def test_pre_tokenizer_names_are_the_ones_llama_cpp_and_transformers_know():
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from training.gguf_export import _pre_tokenizer_name

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert _pre_tokenizer_name({"pre_tokenizer": byte_level}) == "gpt-2"  # the tiny base, the stored SmolLM2
    digits = {"type": "Digits", "individual_digits": True}
    assert _pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [digits, byte_level]}}) == "smollm"
    split = {"type": "Split", "pattern": {"Regex": PRETOKENIZE_REGEX}, "behavior": "Isolated", "invert": False}
    qwen = {"type": "Sequence", "pretokenizers": [split, {**byte_level, "use_regex": False}]}
    assert _pre_tokenizer_name({"pre_tokenizer": qwen}) == "qwen2"
    assert _pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}}) is None


# ---------------------------------------------------------------- the Ollama Modelfile

def _go_render(template: str, values: dict) -> str:
    """The Go-template subset a ChatML Modelfile uses: `{{ .Field }}` and `{{ if .Field }}...{{ end }}`."""
    out, show = [], [True]
    for part in re.split(r"({{.*?}})", template, flags=re.DOTALL):
        m = re.fullmatch(r"{{-?\s*(.*?)\s*-?}}", part, flags=re.DOTALL)
        if not m:
            if all(show):
                out.append(part)
            continue
        expr = m.group(1)
        if expr.startswith("if "):
            show.append(bool(values.get(expr[3:].strip().lstrip("."))))
        elif expr == "end":
            show.pop()
        elif expr.startswith("."):
            if all(show):
                out.append(values.get(expr[1:], ""))
        else:
            raise AssertionError(f"unexpected template action {expr!r}")
    return "".join(out)


def _ollama_prompt(modelfile: str, messages: list[dict]) -> str:
    """What Ollama sends the model for `messages` with a legacy (.System/.Prompt/.Response) TEMPLATE:
    the Modelfile's SYSTEM when the chat has none, one template pass per exchange, and the last pass
    cut after {{ .Response }} (ollama template.Execute)."""
    template = re.search(r'^TEMPLATE """(.*?)"""$', modelfile, flags=re.DOTALL | re.MULTILINE).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', modelfile, flags=re.DOTALL | re.MULTILINE)
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system.group(1)}, *messages]
    out, v = [], {"System": "", "Prompt": "", "Response": ""}

    def execute():
        out.append(_go_render(template, v))
        v.update(System="", Prompt="", Response="")

    for m in messages:
        if m["role"] == "system":
            if v["Prompt"] or v["Response"]:
                execute()
            v["System"] = m["content"]
        elif m["role"] == "user":
            if v["Response"]:
                execute()
            v["Prompt"] = m["content"]
        else:
            v["Response"] = m["content"]
    cut = template.index("{{ .Response }}") + len("{{ .Response }}")
    out.append(_go_render(template[:cut], v))
    return "".join(out)


CHATS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}],
]


def _check_modelfile(model_dir: Path, modelfile: str, gguf_name: str) -> None:
    from training.inference import load_tokenizer

    tok = load_tokenizer(model_dir)
    assert f"FROM ./{gguf_name}\n" in modelfile
    stops = re.findall(r'^PARAMETER stop "(.*)"$', modelfile, flags=re.MULTILINE)
    assert tok.eos_token in stops and set(stops) <= set(tok.all_special_tokens)
    assert stops == [s for s in ("<|im_end|>", "<|endoftext|>") if s in tok.get_vocab()]  # ChatML's ends
    for chat in CHATS:  # what Ollama sends is what the chat template renders, default system prompt included
        assert _ollama_prompt(modelfile, chat) == tok.apply_chat_template(chat, tokenize=False,
                                                                          add_generation_prompt=True), chat


def test_modelfile_of_the_tiny_run_matches_its_chat_template_and_stop_tokens(ws):
    from training.gguf_export import export_run

    run = ws / "runs" / "run-a"
    if not (run / "export" / "Modelfile").is_file():
        export_run(run, quant="f16", check=False)
    modelfile = (run / "export" / "Modelfile").read_text()
    name = re.search(r"^FROM \./(.*)$", modelfile, flags=re.MULTILINE).group(1)
    assert (run / "export" / name).is_file() and "SYSTEM" not in modelfile  # the tiny template adds no system turn
    _check_modelfile(run / "merged", modelfile, name)


# ---------------------------------------------------------------- the real SmolLM2 base

@pytest.fixture(scope="module")
def smollm2():
    from training.models import DEMO_MODEL, ModelUnavailable, resolve_base

    try:
        return Path(resolve_base(DEMO_MODEL, fetch=False))
    except ModelUnavailable as exc:
        pytest.skip(f"{DEMO_MODEL} is not in the model store: {exc}")


def test_modelfile_of_smollm2_keeps_its_default_system_prompt(smollm2):
    from training.gguf_export import modelfile_text

    text, notes = modelfile_text(smollm2, "smol.gguf", run_name="smol")
    assert notes == [] and 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    _check_modelfile(smollm2, text, "smol.gguf")


def test_smollm2_with_an_adapter_exports_f16_and_generates_the_merged_models_tokens(smollm2, tmp_path):
    from training.gguf_export import export_run

    run = tmp_path / "ws" / "runs" / "smol-a"
    build_adapter(smollm2, run / "adapter", seed=3, r=8, scale=0.02)
    (run / "config.yaml").write_text("base: smollm2-135m-instruct\nmethod: lora\n")
    (run / "status.json").write_text('{"state": "done"}')
    result = export_run(run, quant="f16", device="cpu")
    check = result.check
    assert result.merge_max_abs_diff is not None and result.merge_max_abs_diff < 1e-3
    assert check.ok and check.tokens_match, check.summary()
    assert check.greedy_same == check.greedy_of == 8, check.summary()
    assert check.max_abs_diff < 5e-3 * check.max_abs_logit  # measured 0.044 of 42.3
    assert _tensor_types(result.gguf.path) == {"F16", "F32"}
    modelfile = result.modelfile.read_text()
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "SYSTEM" in modelfile


# ---------------------------------------------------------------- vLLM

def _run_vllm_script(script: Path, bin_dir: Path, *extra: str) -> list[str]:
    """The arguments vllm.sh gives `vllm`, through a stand-in vllm that prints them one a line."""
    fake = bin_dir / "vllm"
    bin_dir.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run([str(script), *extra], capture_output=True, text=True, env=env, check=True).stdout.splitlines()


def test_vllm_command_names_the_adapter_and_rank_and_the_script_runs(ws, tmp_path, capsys):
    from studio.cli import main

    run = ws / "runs" / "run-a"
    code = main(["-w", str(ws), "export-model", "run-a", "--vllm"])
    text = capsys.readouterr().out
    assert code == 0, text
    line = next(ln.strip()[len("vllm: "):] for ln in text.splitlines() if ln.strip().startswith("vllm: "))
    assert line.startswith(f"vllm serve {ws / 'models' / 'tiny'} --enable-lora")
    assert f"--lora-modules run-a={run / 'adapter'}" in line and line.endswith("--max-lora-rank 8")
    script = run / "export" / "vllm.sh"
    assert os.access(script, os.X_OK) and "--max-lora-rank 8" in script.read_text()

    argv = _run_vllm_script(script, tmp_path / "bin", "--port", "8001")
    assert argv[0] == "serve" and argv[-2:] == ["--port", "8001"]
    assert Path(argv[1]).resolve() == (ws / "models" / "tiny").resolve()  # the base, relative to the run
    name, _, adapter = argv[argv.index("--lora-modules") + 1].partition("=")
    assert name == "run-a" and Path(adapter).resolve() == (run / "adapter").resolve()
    assert (Path(adapter) / "adapter_config.json").is_file()


# ---------------------------------------------------------------- moving the workspace

def test_moving_the_workspace_keeps_chat_merge_and_export_working(tmp_path, capsys):
    from studio.cli import main
    from tests.training_fixtures import write_split
    from training.inference import load_session
    from training.merge import merge_run

    ws = tmp_path / "ws"
    write_split(ws / "splits" / "v1", n_train=12, n_val=4)
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text("".join(json.dumps({"text": f"The clause {i} binds the first party."}) + "\n"
                                               for i in range(16)))
    (data / "general.jsonl").write_text("".join(json.dumps({"text": f"general text {i}."}) + "\n" for i in range(8)))
    spec = {"name": "p", "base": "tiny", "preset": "tiny-demo",
            "set": {"train.max_steps": 2, "train.eval_steps": 2, "train.save_steps": 2},
            "stages": [{"name": "pretrain", "split": "corpus.jsonl", "set": {"data.kind": "text", "lora.r": 8}},
                       {"name": "sft", "split": "v1", "set": {"lora.r": 4, "lora.alpha": 8},
                        "replay": {"file": "general.jsonl", "fraction": 0.25}}]}
    (data / "p.yaml").write_text(yaml.safe_dump(spec))
    assert main(["-w", str(ws), "pipeline", str(data / "p.yaml"), "--merge-dtype", "fp32", "--json"]) == 0
    capsys.readouterr()

    stage2 = ws / "runs" / "p-2-sft"
    saved = yaml.safe_load((stage2 / "config.yaml").read_text())
    assert saved["base"] == "../p-1-pretrain/merged"  # relative to the run, not /tmp/.../ws/runs/...
    assert (stage2 / "config.yaml").read_text().startswith("# reproduce: ")
    assert "# replay:" in (stage2 / "config.yaml").read_text()
    adapter1 = json.loads((ws / "runs" / "p-1-pretrain" / "adapter" / "adapter_config.json").read_text())
    adapter2 = json.loads((stage2 / "adapter" / "adapter_config.json").read_text())
    assert adapter1["base_model_name_or_path"] == "base"
    assert adapter2["base_model_name_or_path"] == "../p-1-pretrain/merged"
    assert json.loads((stage2 / "adapter" / "run.json").read_text())["base"] == "../p-1-pretrain/merged"

    assert main(["-w", str(ws), "export-model", "p-2-sft", "--vllm"]) == 0  # vllm.sh written before the move
    capsys.readouterr()

    moved = tmp_path / "elsewhere" / "ws-moved"
    moved.parent.mkdir()
    shutil.move(str(ws), str(moved))
    assert not ws.exists()
    for run_name in ("p-2-sft", "p-1-pretrain"):
        run = moved / "runs" / run_name
        session = load_session(run, device="cpu")
        answer = session.generate([{"role": "user", "content": "What is ice?"}], adapter=run_name, max_new_tokens=4,
                                  temperature=0)
        assert answer.completion_tokens >= 1
    result = merge_run(moved / "runs" / "p-2-sft", tmp_path / "merged-after-move", dtype="fp32", device="cpu")
    assert result.ok and result.adapter_effect > 0

    # the split too: config.yaml keeps it relative to the run, so eval and resume find it after the move
    from training.config import load_run_config

    assert not Path(yaml.safe_load((moved / "runs" / "p-2-sft" / "config.yaml").read_text())["data"]["split"]).is_absolute()
    moved_split = Path(load_run_config(moved / "runs" / "p-2-sft").data.split)
    assert moved_split.is_dir() and moved_split.resolve().is_relative_to(moved.resolve())

    argv = _run_vllm_script(moved / "runs" / "p-2-sft" / "export" / "vllm.sh", tmp_path / "bin")
    assert Path(argv[1]).resolve() == (moved / "runs" / "p-1-pretrain" / "merged").resolve()
    assert main(["-w", str(moved), "export-model", "p-2-sft", "--vllm"]) == 0
    line = capsys.readouterr().out
    assert f"vllm serve {(moved / 'runs' / 'p-1-pretrain' / 'merged').resolve()} --enable-lora" in line


def test_the_adapter_loads_with_plain_peft_from_the_run_directory(tmp_path, monkeypatch):
    """adapter_config.json's base is relative to the run directory: from there, PEFT alone loads it."""
    import torch
    from peft import AutoPeftModelForCausalLM

    from tests.training_fixtures import tiny_config, write_split
    from training import runs

    ws = tmp_path / "ws"
    split = write_split(ws / "splits" / "v1", n_train=8, n_val=0)
    run = runs.create_run(ws / "runs", tiny_config(split, **{"train.max_steps": 1, "train.eval_steps": 1}), name="one")
    assert runs.run_foreground(run).state == "done"
    moved = tmp_path / "moved"
    shutil.move(str(ws), str(moved))
    monkeypatch.chdir(moved / "runs" / "one")
    model = AutoPeftModelForCausalLM.from_pretrained("adapter", dtype=torch.float32)
    assert Path(model.peft_config["default"].base_model_name_or_path) == Path("base")
