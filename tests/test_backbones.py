"""Backbones: real weights recognise real images; every family honours the fine-tuning contract."""
import pytest
import torch
from torch import nn

import ftlib
from ftlib.errors import FtlibError
from ftlib.train import predict_logits
from ftlib.weights import convert_state_dict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ANT, BEE = 310, 309  # ImageNet-1k class indices

# one contract test per supported model family; (name, input side)
FAMILIES = [
    ("timm/tf_efficientnet_lite0", 64),
    ("torchvision/resnet18", 64),
    ("torchvision/mobilenet_v2", 64),
    ("torchvision/mobilenet_v3_small", 64),
    ("torchvision/efficientnet_b0", 64),
    ("torchvision/convnext_tiny", 64),
    ("torchvision/vit_b_16", 224),  # a ViT's position embeddings fix its input size
]


def test_lite0_imagenet_head_tells_ants_from_bees():
    """Converted offline weights + the weights' own mean/std: >= 95% on hymenoptera test (about 96.7%)."""
    bb = ftlib.load_backbone("timm/tf_efficientnet_lite0")  # ImageNet head kept
    ds = ftlib.load_dataset("hymenoptera", resolution=224)
    assert len(ds.test) == 153 and ds.classes == ["ants", "bees"]
    logits = predict_logits(bb.model, ds.test, bb.mean, bb.std, amp=False)
    assert logits.shape == (153, 1000)
    pred = logits[:, [ANT, BEE]].argmax(1)  # column 0 = ants = label 0
    acc = (pred == ds.test.labels).float().mean().item()
    assert acc >= 0.95, acc


@pytest.mark.parametrize("name", ["timm/tf_efficientnet_lite0", "timm/tf_efficientnet_lite1",
                                  "timm/tf_efficientnet_lite2"])
def test_lite_normalisation_comes_from_the_weights(name):
    bb = ftlib.load_backbone(name, num_classes=2, pretrained=False)
    assert bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.5, 0.5, 0.5)


def test_default_resolution_is_the_default_backbones_pretraining_size():
    """One default side for load_dataset and RunConfig, and it is what timm says lite0 was trained at."""
    import timm

    from ftlib.datasets import DEFAULT_RESOLUTION

    assert timm.models.get_pretrained_cfg(ftlib.DEFAULT_BACKBONE.split("/", 1)[1]).input_size == (3, 224, 224)
    assert ftlib.load_backbone(pretrained=False).input_size == DEFAULT_RESOLUTION
    assert ftlib.RunConfig("hymenoptera").resolution == DEFAULT_RESOLUTION


def test_torchvision_resnet18_uses_imagenet_normalisation():
    bb = ftlib.load_backbone("torchvision/resnet18", num_classes=2, pretrained=False)
    assert bb.mean == pytest.approx(IMAGENET_MEAN) and bb.std == pytest.approx(IMAGENET_STD)
    assert bb.input_size == 224


@pytest.mark.parametrize("name,side", FAMILIES, ids=[n for n, _ in FAMILIES])
def test_family_contract(name, side):
    torch.manual_seed(0)
    bb = ftlib.load_backbone(name, num_classes=7, pretrained=False)
    assert not bb.pretrained
    with torch.no_grad():
        out = bb.model.eval()(torch.randn(1, 3, side, side))
    assert out.shape == (1, 7)

    # blocks cover every parameter exactly once (by identity)
    model_ids = [id(p) for p in bb.model.parameters()]
    block_ids = [id(p) for _, m in bb.blocks for p in m.parameters()]
    assert sorted(block_ids) == sorted(model_ids)
    assert len(block_ids) == len(set(block_ids))
    names = [b for b, _ in bb.blocks]
    assert len(names) == len(set(names))
    assert names[0] in ("stem", "features.0")
    assert names[-1] == "head"
    assert set(bb.block_of()) == {n for n, _ in bb.model.named_parameters()}

    # the head block holds exactly the new Linear's parameters, and that Linear makes the output
    head = bb.head
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert head.weight.shape == (7, head.in_features)
    head_block = dict(bb.blocks)["head"]
    assert {id(p) for p in head_block.parameters()} == {id(head.weight), id(head.bias)}
    assert bb.model.get_submodule(bb.head_name) is head
    with torch.no_grad():
        head.bias.fill_(0.0)
        head.weight.fill_(0.0)
        out = bb.model(torch.randn(1, 3, side, side))
    assert torch.equal(out, torch.zeros(1, 7))  # the output really comes from this head


@pytest.mark.parametrize("name", ["timm/tf_efficientnet_lite0", "torchvision/resnet18"])
def test_num_classes_none_keeps_imagenet_head(name):
    bb = ftlib.load_backbone(name, num_classes=None, pretrained=False)
    assert bb.head.out_features == 1000
    with torch.no_grad():
        assert bb.model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("name,valid", [
    ("timm/tf_efficientnet_lite9", "tf_efficientnet_lite0"),
    ("torchvision/resnet19", "resnet18"),
    ("keras/resnet18", "timm/tf_efficientnet_lite0"),
    ("resnet18", "timm/tf_efficientnet_lite0"),
])
def test_unknown_backbone_lists_valid_names(name, valid):
    with pytest.raises(FtlibError) as err:
        ftlib.load_backbone(name, pretrained=False)
    assert isinstance(err.value, ValueError)
    assert valid in str(err.value)


def test_bad_num_classes_is_refused():
    with pytest.raises(FtlibError):
        ftlib.load_backbone("torchvision/resnet18", num_classes=0, pretrained=False)


def test_convert_state_dict_maps_by_position():
    src = {"_a": torch.arange(6.0).view(2, 3), "_b": torch.tensor([7.0, 8.0])}
    out = convert_state_dict(src, {"a": torch.zeros(2, 3), "b": torch.zeros(2)})
    assert list(out) == ["a", "b"]
    assert torch.equal(out["a"], src["_a"]) and torch.equal(out["b"], src["_b"])


def test_convert_state_dict_refuses_shape_mismatch():
    src = {"_a": torch.zeros(2, 3), "_b": torch.zeros(2)}
    with pytest.raises(FtlibError, match="shape"):
        convert_state_dict(src, {"a": torch.zeros(3, 2), "b": torch.zeros(2)})


def test_convert_state_dict_refuses_count_mismatch():
    src = {"_a": torch.zeros(2, 3), "_b": torch.zeros(2)}
    with pytest.raises(FtlibError):
        convert_state_dict(src, {"a": torch.zeros(2, 3)})
    with pytest.raises(FtlibError):
        convert_state_dict(src, {"a": torch.zeros(2, 3), "b": torch.zeros(2), "c": torch.zeros(1)})


def test_packaged_lite0_file_converts_strictly_into_timm():
    """The PyPI file's 296 tensors map one to one, shape-checked, onto timm's lite0."""
    import timm

    from ftlib.weights import packaged_file

    source = torch.load(packaged_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    assert len(source) == len(target) == 296
    converted = convert_state_dict(source, target)
    assert list(converted) == list(target)
    model.load_state_dict(converted, strict=True)
    assert torch.equal(model.conv_stem.weight, next(iter(source.values())))
