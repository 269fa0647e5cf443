"""BatchNorm folding for inference: the folded copy gives the eval-mode model's outputs, and folds only true pairs."""
import pytest
import torch
from torch import nn

from ftlib.backbones import load_backbone
from ftlib.fuse import fold_batchnorm


def randomise_bn_stats(model):
    """Non-trivial running statistics and affine terms, so a wrong fold cannot pass by accident."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("name", ["timm/tf_efficientnet_lite0", "torchvision/resnet18"])
def test_folded_model_matches_the_eval_model(name):
    torch.manual_seed(0)
    model = load_backbone(name, num_classes=3, pretrained=name.startswith("timm/")).model
    randomise_bn_stats(model)
    model.train()
    x = torch.randn(2, 3, 96, 96)
    fast = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # every BN here follows a conv
    assert model.training  # the original is untouched, mode included
    with torch.no_grad():
        ref = model.eval()(x)
        torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=1e-4)


def test_only_a_batchnorm_fed_by_a_conv_is_folded():
    torch.manual_seed(0)
    # pre-activation: BN -> ReLU -> conv, then a conv whose output is ReLU'd before its BN
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),
                          nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5))
    randomise_bn_stats(model)
    fast = fold_batchnorm(model)
    kinds = [type(m).__name__ for m in fast]
    assert kinds == ["BatchNorm2d", "ReLU", "Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "Identity"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_a_model_without_batchnorm_or_that_refuses_the_sample_comes_back_unfolded():
    torch.manual_seed(0)

    class FixedSize(nn.Module):  # like a ViT without dynamic image size: only its own input size runs
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            assert x.shape[-1] == 8, "fixed input size"
            return self.bn(self.conv(x))

    model = FixedSize()
    randomise_bn_stats(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        same = fold_batchnorm(model, resolution=16)  # cannot trace at 16 px: unfolded, still correct
        assert isinstance(same.bn, nn.BatchNorm2d)
        torch.testing.assert_close(same(x), model.eval()(x))
        folded = fold_batchnorm(model, resolution=8)
        assert not isinstance(folded.bn, nn.BatchNorm2d)
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-5, atol=1e-5)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert isinstance(fold_batchnorm(plain)[0], nn.Conv2d)


def test_folded_view_is_built_once_and_follows_the_live_weights():
    """The cached copy must give the eval-mode outputs of the model's *current* weights after every
    kind of change fit makes (optimiser steps, BatchNorm statistics, load_state_dict), and be rebuilt
    when the modules change."""
    from ftlib.fuse import folded_view

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1, bias=True),
                          nn.BatchNorm2d(5), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(4, 3, 8, 8)
    model(x)  # materialise the lazy layer
    randomise_bn_stats(model)
    first = folded_view(model, 8)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def check():
        view = folded_view(model, 8)
        assert view is first  # refreshed in place, not rebuilt
        assert not any(isinstance(m, nn.BatchNorm2d) for m in view.modules())
        with torch.no_grad():
            torch.testing.assert_close(view(x), model.eval()(x), rtol=1e-5, atol=1e-5)

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(3):  # train mode: weights move and the running statistics update
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    check()
    model.load_state_dict(start)  # fit restores the best epoch like this
    check()
    model[6] = nn.Linear(5 * 6 * 6, 2)  # a new head: other modules, so a new copy
    assert folded_view(model, 8) is not first
    with torch.no_grad():
        torch.testing.assert_close(folded_view(model, 8)(x), model.eval()(x), rtol=1e-5, atol=1e-5)
