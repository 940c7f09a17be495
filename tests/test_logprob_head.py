"""The loss head's gradient computed in forward (training/logprob_head.py) against TRL's
ChunkedLogProbFunction, which recomputes the logits in backward: the same values and gradients."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from trl.trainer import utils as trl_utils  # noqa: E402

from training import logprob_head  # noqa: E402


@pytest.fixture(autouse=True)
def _on(monkeypatch):
    monkeypatch.setattr(logprob_head, "GRAD_IN_FORWARD", True)


def _case(n=37, width=24, vocab=2100, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, width, generator=g) * 2
    weight = torch.randn(vocab, width, generator=g) * 0.5
    b = torch.randn(vocab, generator=g) if bias else None
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[1::3] = (hidden @ weight.t()).argmax(1)[1::3]  # every third token's target is its top-1
    targets[0] = vocab - 1  # the last column, past every 1,024-wide block boundary
    upstream = torch.randn(n, generator=g)  # a different incoming gradient for every token
    return hidden, weight, b, targets, upstream


def _trl(hidden, weight, b, targets, upstream):
    h = hidden.clone().requires_grad_()
    lp, ent, _, _, top1 = trl_utils._ChunkedLogProbFunction.apply(h, weight, b, targets, 1.0, 512, None, 1.0,
                                                                 ("log_probs", "entropy", "is_top1"))
    (lp * upstream).sum().backward()
    return lp.detach(), ent, top1, h.grad


def _ours(hidden, weight, b, targets, upstream):
    h = hidden.clone().requires_grad_()
    assert logprob_head.applies(h, weight, b)
    lp, ent, top1 = logprob_head.LogProbsGradInForward.apply(h, weight, b, targets)
    (lp * upstream).sum().backward()
    return lp.detach(), ent, top1, h.grad


@pytest.mark.parametrize("rows", [8, 512])  # several row blocks, and one
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradient_equal_trls(monkeypatch, rows, bias):
    monkeypatch.setattr(logprob_head, "ROWS", rows)
    case = _case(bias=bias)
    lp_t, ent_t, top_t, grad_t = _trl(*case)
    lp_o, ent_o, top_o, grad_o = _ours(*case)
    torch.testing.assert_close(lp_o, lp_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent_o, ent_t, rtol=1e-5, atol=1e-5)
    assert torch.equal(top_o, top_t) and top_o.any()  # some targets are the argmax: the flag is tested
    torch.testing.assert_close(grad_o, grad_t, rtol=1e-4, atol=1e-5)
    # and against the logits written out in full
    hidden, weight, b, targets, upstream = case
    h = hidden.clone().requires_grad_()
    logits = h @ weight.t() + (b if b is not None else 0)
    ref = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(lp_o, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_o, h.grad, rtol=1e-4, atol=1e-5)


def test_top1_flag_marks_the_argmax():
    hidden, weight, b, targets, upstream = _case(n=16)
    targets = (hidden @ weight.t()).argmax(1)
    targets[:4] = (targets[:4] + 1) % weight.shape[0]
    _, _, top1 = logprob_head.LogProbsGradInForward.apply(hidden.requires_grad_(), weight, None, targets)
    assert top1.tolist() == [False] * 4 + [True] * 12


def test_bf16_under_autocast_is_within_trls_rounding():
    hidden, weight, b, targets, upstream = _case(n=40, width=32, vocab=1500)
    weight = weight.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp_t, _, _, grad_t = _trl(hidden, weight, None, targets, upstream)
        lp_o, _, _, grad_o = _ours(hidden, weight, None, targets, upstream)
    torch.testing.assert_close(lp_o, lp_t, rtol=1e-5, atol=1e-5)  # the same bf16 logits, folded in other tiles
    assert grad_o.dtype == grad_t.dtype == torch.float32
    rel = (grad_o - grad_t).norm() / grad_t.norm()
    assert rel < 1e-2, rel  # onehot - p rounded to bf16 before the upstream scale, TRL's after


def test_applies_only_where_the_gradient_is_known_in_forward(monkeypatch):
    hidden, weight, b, *_ = _case()
    h = hidden.requires_grad_()
    assert logprob_head.applies(h, weight, b)
    assert not logprob_head.applies(h, weight.requires_grad_(), None)  # a trained head: TRL's
    weight.requires_grad_(False)
    assert not logprob_head.applies(h, weight, torch.zeros(weight.shape[0], requires_grad=True))
    assert not logprob_head.applies(hidden.detach(), weight, None)  # nothing needs a gradient
    with torch.no_grad():
        assert not logprob_head.applies(h, weight, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not logprob_head.applies(h, weight, None)  # an fp32 weight under bf16: TRL's tiles cast it
    monkeypatch.setattr(logprob_head, "GRAD_IN_FORWARD", False)
    assert not logprob_head.applies(h, weight, None)
