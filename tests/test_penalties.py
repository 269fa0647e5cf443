"""The L2-SP penalty against hand computation, analytic gradients and autograd."""
import pytest
import torch
from torch import nn

from ftlib.backbones import Backbone, build_blocks
from ftlib.penalties import L2SPPenalty


def small_backbone():
    """conv + bn + linear head, in float64, with its blocks: a Backbone the penalty can cover."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).double()
    return Backbone("toy", model, (0.5,) * 3, (0.5,) * 3, 8, build_blocks(model, "4"), "4", True)


def perturb(model, scale=0.3):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


def test_l2sp_equals_hand_computation_kernels_only():
    bb = small_backbone()
    conv, bn, head = bb.model[0], bb.model[1], bb.model[4]
    w0 = {k: v.detach().clone() for k, v in bb.model.state_dict().items()}
    alpha, beta = 0.3, 0.07
    pen = L2SPPenalty.for_backbone(bb, alpha, beta)
    perturb(bb.model)
    # by hand, element by element: only the conv kernel is pulled to w0, only the head weight to 0
    d = (conv.weight.detach() - w0["0.weight"]).flatten().tolist()
    h = head.weight.detach().flatten().tolist()
    expected = alpha / 2 * sum(x * x for x in d) + beta / 2 * sum(x * x for x in h)
    assert float(pen().detach()) == pytest.approx(expected, rel=1e-12)
    assert pen.covered() == {id(conv.weight), id(head.weight)}
    assert not {id(conv.bias), id(bn.weight), id(bn.bias), id(head.bias)} & pen.covered()


def test_l2sp_with_bn_and_bias_equals_hand_computation():
    bb = small_backbone()
    w0 = {k: v.detach().clone() for k, v in bb.model.named_parameters()}
    alpha, beta = 0.2, 0.05
    pen = L2SPPenalty.for_backbone(bb, alpha, beta, include_bn_bias=True)
    perturb(bb.model)
    params = {n: p.detach() for n, p in bb.model.named_parameters()}
    body = ["0.weight", "0.bias", "1.weight", "1.bias"]
    expected = alpha / 2 * sum(float(((params[n] - w0[n]) ** 2).sum()) for n in body)
    expected += beta / 2 * sum(float((params[n] ** 2).sum()) for n in ("4.weight", "4.bias"))
    assert float(pen().detach()) == pytest.approx(expected, rel=1e-12)
    assert pen.covered() == {id(p) for p in bb.model.parameters()}


def test_l2sp_is_zero_at_start_when_beta_is_zero():
    bb = small_backbone()
    assert float(L2SPPenalty.for_backbone(bb, alpha=0.5, beta=0.0)().detach()) == 0.0
    assert float(L2SPPenalty.for_backbone(bb, alpha=0.5, beta=0.0, include_bn_bias=True)().detach()) == 0.0


def test_l2sp_at_start_is_the_head_term():
    bb = small_backbone()
    head = bb.model[4].requires_grad_(False)
    beta = 0.01
    weight_only = beta / 2 * float(head.weight.pow(2).sum())
    assert float(L2SPPenalty.for_backbone(bb, 0.1, beta)().detach()) == pytest.approx(weight_only)
    both = beta / 2 * float(head.weight.pow(2).sum() + head.bias.pow(2).sum())
    assert float(L2SPPenalty.for_backbone(bb, 0.1, beta, include_bn_bias=True)().detach()) == pytest.approx(both)


@pytest.mark.parametrize("include_bn_bias", [False, True])
def test_l2sp_gradient_matches_analytic_and_autograd(include_bn_bias):
    bb = small_backbone()
    w0 = {k: v.detach().clone() for k, v in bb.model.named_parameters()}
    alpha, beta = 0.3, 0.02
    pen = L2SPPenalty.for_backbone(bb, alpha, beta, include_bn_bias=include_bn_bias)
    perturb(bb.model)
    params = dict(bb.model.named_parameters())
    names = list(params)
    covered = [n for n in names if include_bn_bias or params[n].ndim > 1]
    grads = torch.autograd.grad(pen(), [params[n] for n in names], allow_unused=True)
    # the same penalty written out plainly, differentiated by autograd
    plain = sum(alpha / 2 * (params[n] - w0[n]).pow(2).sum() for n in covered if not n.startswith("4."))
    plain = plain + sum(beta / 2 * params[n].pow(2).sum() for n in covered if n.startswith("4."))
    oracle = torch.autograd.grad(plain, [params[n] for n in covered])
    for n, g in zip(names, grads):
        if n not in covered:
            assert g is None or torch.count_nonzero(g) == 0, n
            continue
        analytic = beta * params[n] if n.startswith("4.") else alpha * (params[n] - w0[n])
        assert torch.allclose(g, analytic.detach(), rtol=1e-12, atol=1e-15), n
        assert torch.allclose(g, oracle[covered.index(n)], rtol=1e-12, atol=1e-15), n
