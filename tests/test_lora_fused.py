"""training/lora_fused.py: the fused LoRA dropout branch gives PEFT's results and keeps less."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

peft = pytest.importorskip("peft")

from training import lora_fused  # noqa: E402
from training.lora_fused import DropoutLinear, _DropoutLinearFn, fuse_lora_dropout  # noqa: E402


class Attn(torch.nn.Module):
    """q/k/v read the same input, as in a decoder layer; o reads their mix."""

    def __init__(self, h: int = 32):
        super().__init__()
        self.q, self.k, self.v, self.o = (torch.nn.Linear(h, h, bias=False) for _ in range(4))

    def forward(self, x):
        return self.o(torch.tanh(self.q(x) * self.k(x) + self.v(x)))


def peft_pair(dropout: float, seed: int = 0):
    torch.manual_seed(seed)
    base = Attn()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q", "k", "v", "o"])
    ref = peft.get_peft_model(base, cfg)
    for n, p in ref.named_parameters():  # non-zero B so every gradient is exercised
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    fused = copy.deepcopy(ref)
    assert fuse_lora_dropout(fused) == 4
    return ref, fused


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_function_matches_dropout_then_linear_for_the_same_mask():
    x = torch.randn(3, 5, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    g = torch.randn(3, 5, 4)
    torch.manual_seed(7)
    y = _DropoutLinearFn.apply(x, w, 0.3, torch.float32)
    y.backward(g)
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    torch.manual_seed(7)
    xd, _ = torch.native_dropout(x, 0.3, True)
    y2 = F.linear(xd, w)
    y2.backward(g)
    assert torch.equal(y, y2)
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, w.grad)
    assert (xd == 0).any(), "the mask dropped nothing: the test would not see a wrong mask"


def test_no_dropout_gives_peft_outputs_and_gradients():
    ref, fused = peft_pair(0.0)
    x = torch.randn(2, 6, 32)
    ref(x).square().sum().backward()
    fused(x).square().sum().backward()
    torch.testing.assert_close(ref(x), fused(x))
    gr, gf = grads(ref), grads(fused)
    assert gr.keys() == gf.keys() and len(gr) == 8
    for n in gr:
        torch.testing.assert_close(gr[n], gf[n], msg=n)


def test_dropout_statistics_and_eval_mode():
    ref, fused = peft_pair(0.5)
    x = torch.randn(4, 64, 32)
    fused.eval()
    ref.eval()
    torch.testing.assert_close(ref(x), fused(x))  # eval: no dropout on either side
    fused.train()
    ys = [fused(x) for _ in range(3)]
    assert not torch.equal(ys[0], ys[1])  # a fresh mask per call
    lin = fused.base_model.model.q.lora_A["default"]
    assert isinstance(lin, DropoutLinear) and lin.dropout_p == 0.5


def test_checkpoint_recompute_gives_the_same_gradients():
    _, fused = peft_pair(0.2)
    x = torch.randn(2, 8, 32, requires_grad=True)
    torch.manual_seed(3)
    fused(x).sum().backward()
    plain = grads(fused)
    fused.zero_grad()
    torch.manual_seed(3)
    torch.utils.checkpoint.checkpoint(fused, x, use_reentrant=False).sum().backward()
    for n, g in grads(fused).items():
        torch.testing.assert_close(g, plain[n], msg=n)


def saved_bytes(model, x) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(seen.values())


def test_fused_branch_keeps_less_for_backward():
    ref, fused = peft_pair(0.1)
    x = torch.randn(4, 128, 32, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r, f = saved_bytes(ref, x), saved_bytes(fused, x)
    assert f < 0.6 * r, (f, r)


def test_state_dict_and_merge_unchanged():
    ref, fused = peft_pair(0.1)
    assert list(ref.state_dict()) == list(fused.state_dict())
    merged_r = copy.deepcopy(ref).merge_and_unload()
    merged_f = copy.deepcopy(fused).merge_and_unload()
    for (n, a), (_, b) in zip(merged_r.state_dict().items(), merged_f.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)
    assert fuse_lora_dropout(fused) == 4  # idempotent


def test_output_fused_into_addmm_gives_peft_outputs_and_falls_back(monkeypatch):
    ref, fused = peft_pair(0.0)
    q = fused.base_model.model.q
    assert type(q).__mro__[1] is peft.tuners.lora.layer.Linear and type(q).forward is lora_fused._fused_forward
    x = torch.randn(2, 6, 32)
    calls = []
    addmm = torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: calls.append(1) or addmm(*a, **k))
    torch.testing.assert_close(ref(x), fused(x))
    assert len(calls) == 4  # every adapted projection took the fused path
    with fused.disable_adapter(), ref.disable_adapter():  # PEFT's own forward: the base layers alone
        torch.testing.assert_close(fused(x), ref(x))
    assert len(calls) == 4
    monkeypatch.setattr(lora_fused, "FUSE_OUTPUT", False)
    _, plain = peft_pair(0.0)
    assert type(plain.base_model.model.q) is peft.tuners.lora.layer.Linear  # the switch off: PEFT's class


class Biased(torch.nn.Module):
    """q with a bias (Qwen2's q/k/v have one), o without; x's gradient flows back to an input."""

    def __init__(self, h: int = 32):
        super().__init__()
        self.q = torch.nn.Linear(h, h, bias=True)
        self.o = torch.nn.Linear(h, h, bias=False)

    def forward(self, x):
        return self.o(torch.tanh(self.q(x)))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("keep_mask", [False, True])  # True: as inside a CUDA graph capture
def test_input_gradient_in_the_base_matmul_gives_the_same_results(monkeypatch, dropout, keep_mask):
    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q", "o"])
    model = peft.get_peft_model(Biased(), cfg)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    fuse_lora_dropout(model)
    model.train()
    monkeypatch.setattr(lora_fused, "KEEP_MASK", keep_mask)
    x0 = torch.randn(2, 6, 32)
    results = {}
    calls: list[int] = []
    apply = lora_fused._LoraLinearFn.apply
    monkeypatch.setattr(lora_fused._LoraLinearFn, "apply", lambda *a: calls.append(1) or apply(*a))
    for on in (False, True):
        monkeypatch.setattr(lora_fused, "FUSE_INPUT_GRAD", on)
        calls.clear()
        model.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        torch.manual_seed(3)
        y = model(x)
        y.square().sum().backward()
        results[on] = (y.detach(), x.grad, grads(model))
        assert len(calls) == (2 if on else 0)
    (y_off, gx_off, g_off), (y_on, gx_on, g_on) = results[False], results[True]
    torch.testing.assert_close(y_on, y_off)
    torch.testing.assert_close(gx_on, gx_off)
    assert g_on.keys() == g_off.keys() and len(g_on) == 4  # A and B of q and o; the base stays frozen
    for n in g_off:
        torch.testing.assert_close(g_on[n], g_off[n], msg=n)
    if dropout:
        monkeypatch.setattr(lora_fused, "FUSE_INPUT_GRAD", True)
        torch.manual_seed(4)  # another mask: the outputs move (the dropout is really applied)
        assert not torch.equal(model(x0), y_on)
