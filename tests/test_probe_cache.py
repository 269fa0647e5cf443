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
    fa = probe.extract_features(a, ds.val)
    fresh = probe.extract_features(a, ds.val, cache=False)  # the oracle: computed, not read back
    assert torch.equal(fa, fresh) and counted == [len(ds.val), len(ds.val)]

    torch.manual_seed(1)  # another seed: another head, the same pretrained body
    b = load_backbone("timm/tf_efficientnet_lite0", num_classes=2)
    assert not torch.equal(a.head.weight, b.head.weight)
    assert torch.equal(probe.extract_features(b, ds.val), fa)
    assert counted == [len(ds.val), len(ds.val)]  # served from the cache

    with torch.no_grad():  # a fine-tuned body: its features must be recomputed
        next(b.model.parameters()).mul_(1.01)
    fb = probe.extract_features(b, ds.val)
    assert counted[-1] == len(ds.val) and len(counted) == 3 and not torch.equal(fb, fa)
