"""The probe's feature cache: shared across seeds (a new head does not change the features), never across bodies."""
import pytest
import torch

from ftlib import probe
from ftlib.backbones import load_backbone
from ftlib.datasets import load_dataset


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Features cached under ``tmp_path``; returns the list of image counts actually pushed through the model."""
    monkeypatch.setattr(probe, "cache_dir", lambda *parts: tmp_path.joinpath(*parts))
    (tmp_path / "cache" / "features").mkdir(parents=True)
    calls, real = [], probe._features

    def spy(bb, images, *a, **kw):
        calls.append(len(images))
        return real(bb, images, *a, **kw)

    monkeypatch.setattr(probe, "_features", spy)
    return calls


def test_a_new_head_reuses_cached_features_and_a_changed_body_does_not(counted):
    ds = load_dataset("hymenoptera", 2, 0, 64, max_test_per_class=5)
    torch.manual_seed(0)
    a = load_backbone("timm/tf_efficientnet_lite0", num_classes=2)
    fa = probe.extract_features(a, ds.test)
    fresh = probe.extract_features(a, ds.test, cache=False)  # the oracle: computed, not read back
    assert torch.equal(fa, fresh) and counted == [len(ds.test), len(ds.test)]

    torch.manual_seed(1)  # another seed: another head, the same pretrained body
    b = load_backbone("timm/tf_efficientnet_lite0", num_classes=2)
    assert not torch.equal(a.head.weight, b.head.weight)
    assert torch.equal(probe.extract_features(b, ds.test), fa)
    assert counted == [len(ds.test), len(ds.test)]  # served from the cache

    with torch.no_grad():  # a fine-tuned body: its features must be recomputed
        next(b.model.parameters()).mul_(1.01)
    fb = probe.extract_features(b, ds.test)
    assert counted[-1] == len(ds.test) and len(counted) == 3 and not torch.equal(fb, fa)


def test_features_are_the_heads_input_and_leave_no_hook_on_the_cached_copy():
    """The probe reads the head's input from the cached folded copy (``fuse.folded_view``) through a hook:
    the features must equal the eval-mode model's pre-logits, and the hook must go, since the copy is
    reused by every later evaluation of the model."""
    from ftlib.fuse import folded_view
    from ftlib.transforms import prepare

    torch.manual_seed(0)
    bb = load_backbone("timm/tf_efficientnet_lite0", num_classes=2, pretrained=True)
    images = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)
    feats = probe._features(bb, images, 48, batch_size=2, amp=False)
    twice = probe._features(bb, images, 48, batch_size=4, amp=False)
    assert not folded_view(bb.model, 48).get_submodule(bb.head_name)._forward_hooks
    x = prepare(images, 48, bb.mean, bb.std)
    with torch.no_grad():
        m = bb.model.eval()
        ref = m.forward_head(m.forward_features(x), pre_logits=True)
    assert feats.shape == (4, 1280)
    torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(twice, feats)  # no stale hook: a second extraction returns only its own batch
