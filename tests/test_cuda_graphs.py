"""training/cuda_graphs.py on the CPU: the padded, static-mask path the graphs replay gives the
model's own loss and gradients; the flex block mask rewritten in place masks as a fresh one; the
fused LoRA dropout that keeps its mask (what a graph capture uses) gives the state-replay path's
results. CUDA graphs themselves need a GPU: benches/gpu/NOTES.md has those runs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from training import lora_fused  # noqa: E402
from training.cuda_graphs import GraphedLayers, document_ids  # noqa: E402


def tiny(attn: str = "sdpa"):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                               max_position_embeddings=512)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    m.config.use_cache = False  # packed samples are told apart only without a cache (training/recipe.py)
    return m.train()


def packed(lengths: list[int], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 300, (1, sum(lengths)), generator=g)
    pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    return ids, pos


def loss_and_grads(model, ids, pos):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, position_ids=pos, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_document_ids_are_transformers_packed_sequences_plus_one_for_the_padding():
    from transformers.masking_utils import find_packed_sequence_indices

    _, pos = packed([5, 9, 3])
    doc = document_ids(pos, 24)
    assert doc.shape == (1, 24) and doc.dtype == torch.int32
    assert torch.equal(doc[:, :17], find_packed_sequence_indices(pos).to(torch.int32))
    assert doc[0, 17:].tolist() == [3] * 7  # the padding: one more document
    assert torch.equal(document_ids(pos, 17), doc[:, :17])  # no padding


def test_padded_static_mask_path_gives_the_models_loss_and_gradients():
    model = tiny()
    batches = [packed([20, 25, 5], seed=1), packed([64], seed=2), packed([7, 30], seed=3)]
    want = [loss_and_grads(model, ids, pos) for ids, pos in batches]
    graphs = GraphedLayers(model, 64, capture=False).install()
    for (ids, pos), (loss, grads) in zip(batches, want):  # the mask is rewritten for each layout
        got_loss, got = loss_and_grads(model, ids, pos)
        torch.testing.assert_close(got_loss, loss)
        assert got.keys() == grads.keys()
        for name in grads:
            torch.testing.assert_close(got[name], grads[name], msg=name)
    assert (graphs.replays, graphs.eager) == (3, 0)
    # a packed row longer than the graphs' length runs the layers as they are, with the same result
    ids, pos = packed([40, 40], seed=4)
    graphs.remove()
    loss, grads = loss_and_grads(model, ids, pos)
    graphs = GraphedLayers(model, 64, capture=False).install()
    got_loss, got = loss_and_grads(model, ids, pos)
    torch.testing.assert_close(got_loss, loss)
    assert (graphs.replays, graphs.eager) == (0, 1)
    # evaluation (no gradients) never takes the static path
    with torch.no_grad():
        model(input_ids=ids[:, :30], position_ids=pos[:, :30])
    assert graphs.replays == 0


def test_layers_keep_their_names_and_state_dict():
    model = tiny()
    keys = list(model.state_dict())
    graphs = GraphedLayers(model, 64, capture=False).install()
    assert list(model.state_dict()) == keys
    assert "forward" in vars(graphs.layers[0])
    graphs.remove()
    assert "forward" not in vars(graphs.layers[0])


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_mask_rewritten_in_place_masks_as_a_fresh_one():
    model = tiny("flex_attention")
    graphs = GraphedLayers(model, 256, capture=False)
    graphs._prepare_static(torch.device("cpu"), torch.float32)
    static = graphs.mask
    tensors = {name: getattr(static, name) for name in ("kv_num_blocks", "kv_indices")}
    _, pos = packed([100, 60, 70])  # 230 tokens, padded to 256: documents cross block borders
    graphs.doc.copy_(document_ids(pos, 256))
    graphs._update_mask()
    assert graphs.mask is static and all(getattr(static, n) is t for n, t in tensors.items())  # in place
    from torch.nn.attention.flex_attention import flex_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 256, 16, generator=g) for _ in range(3))
    got = flex_attention(q, k, v, block_mask=static)
    doc = graphs.doc[0]
    i = torch.arange(256)
    dense = (i[:, None] >= i[None, :]) & (doc[:, None] == doc[None, :])
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # the first mask (one document) would not


def test_dropout_that_keeps_its_mask_matches_the_state_replay(monkeypatch):
    x = torch.randn(3, 5, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    g = torch.randn(3, 5, 4)
    results = []
    for keep in (False, True):
        monkeypatch.setattr(lora_fused, "KEEP_MASK", keep)
        torch.manual_seed(7)
        y = lora_fused._DropoutLinearFn.apply(x, w, 0.3, torch.float32)
        y.backward(g)
        results.append((y.detach(), x.grad.clone(), w.grad.clone()))
        x.grad = w.grad = None
    (y0, gx0, gw0), (y1, gx1, gw1) = results
    assert torch.equal(y0, y1)
    torch.testing.assert_close(gx1, gx0)
    torch.testing.assert_close(gw1, gw0)


@pytest.mark.parametrize("sets, words", [
    (["train.gradient_checkpointing=true"], "gradient_checkpointing=false"),
    (["train.gradient_checkpointing=false", "train.compile_layers=true"], "exclude each other"),
    (["train.gradient_checkpointing=false", "data.packing=false"], "data.packing=true"),
])
def test_config_refuses_what_the_graphs_cannot_replay(sets, words):
    from training.config import load_config
    from training.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)) as e:
        load_config(preset="fast", overrides=["train.cuda_graphs=true", *sets], require_base=False)
    assert words in str(e.value)
    cfg = load_config(preset="fast", overrides=["train.cuda_graphs=true", "train.gradient_checkpointing=false"],
                      require_base=False)
    assert cfg.train.cuda_graphs


def test_a_capture_that_fails_leaves_the_layers_as_they_are(caplog):
    """Here (no CUDA) the capture fails as it would on a GPU that cannot capture: the run trains on."""
    model = tiny()
    ids, pos = packed([20, 25, 5])
    loss, grads = loss_and_grads(model, ids, pos)
    graphs = GraphedLayers(model, 64, capture=True).install()
    with caplog.at_level("WARNING", logger="training.cuda_graphs"):
        got_loss, got = loss_and_grads(model, ids, pos)
        got_loss2, _ = loss_and_grads(model, ids, pos)
    torch.testing.assert_close(got_loss, loss)
    torch.testing.assert_close(got_loss2, loss)
    assert graphs.failed and graphs.replays == 0
    assert sum("could not be captured" in r.message for r in caplog.records) == 1


def test_the_refusal_is_one_line_without_the_whole_config():
    from training.config import load_config
    from training.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(preset="fast", overrides=["train.gradient_checkpointing=true"], require_base=False)
    lines = str(e.value).splitlines()
    assert lines[1].strip().startswith("train.cuda_graphs needs train.gradient_checkpointing=false") and len(lines) == 2
    assert "{" not in str(e.value)


@pytest.mark.parametrize("first_only", [True, False])
def test_gradient_hook_accumulates_a_reused_static_buffer(monkeypatch, first_only):
    """A graph's backward writes every micro-batch's gradient into one static tensor, as this
    Function does. With the hook, .grad is the sum of the micro-batches' gradients whether the later
    ones are copied or added in place; without it, .grad is the buffer itself (the bug it prevents)."""
    from training import cuda_graphs

    monkeypatch.setattr(cuda_graphs, "COPY_FIRST_GRAD_ONLY", first_only)
    static = torch.zeros(3)

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w, x):
            ctx.save_for_backward(x)
            return (w * x).sum()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            static.copy_(g * x)  # the replay overwrites the one static gradient
            return static.detach(), None  # as make_graphed_callables hands it out: a new tensor, one storage

    def accumulate(hooked: bool):
        w = torch.nn.Parameter(torch.ones(3))
        if hooked:
            w.register_hook(cuda_graphs._copy_grad(w))
        xs = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0]), torch.tensor([100.0, 0.0, 0.0])]
        for x in xs:
            Replay.apply(w, x).backward()
        return w.grad, sum(xs)

    grad, want = accumulate(hooked=True)
    assert torch.equal(grad, want) and grad.data_ptr() != static.data_ptr()
    grad, want = accumulate(hooked=False)
    assert grad.data_ptr() == static.data_ptr() and not torch.equal(grad, want)  # what the hook prevents
