"""Each backbone x a few heads: output shapes, and one optimiser step on a fixed batch lowers that batch's loss."""

import pytest
import torch
import torch.nn.functional as F

from harmonic.vision.backbones import build_backbone, build_model

HEADS = [{"distance": "baseline"}, {"distance": "euclidean"}, {"distance": "cosine"}, {"distance": "manhattan"}]


def one_step_lowers_loss(model, x, y, lr=1e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    logits, features = model(x)
    before = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = F.cross_entropy(model(x)[0], y)
    return before.item(), after.item(), logits, features


@pytest.mark.parametrize("backbone", ["linear", "mlp", "cnn"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: h["distance"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["mnist", "cifar"])
def test_small_backbones(backbone, head, shape):
    torch.manual_seed(0)
    model = build_model(backbone, head, shape, num_classes=10)
    x, y = torch.randn(16, *shape), torch.arange(16) % 10
    before, after, logits, features = one_step_lowers_loss(model, x, y)
    _, dim = build_backbone(backbone, shape)
    assert logits.shape == (16, 10)
    assert features.shape == (16, dim)
    assert after < before


def test_mahalanobis_head_on_mlp_trains_its_metric():
    torch.manual_seed(0)
    model = build_model("mlp", {"distance": "mahalanobis_diagonal"}, (1, 28, 28), num_classes=10)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    start = model.head.log_diagonal.detach().clone()
    before, after, _, _ = one_step_lowers_loss(model, x, y)
    assert after < before
    assert not torch.equal(start, model.head.log_diagonal.detach())


@pytest.mark.parametrize(
    "backbone,shape,dim,head",
    [
        pytest.param("resnet50", (1, 16, 16), 2048, {"distance": "cosine"}, marks=pytest.mark.slow),
        ("pvt_v2_b0", (1, 28, 28), 256, {"distance": "euclidean"}),
    ],
    ids=["resnet50-cosine", "pvt-euclidean"],
)
def test_large_backbones_on_tiny_batches(backbone, shape, dim, head):
    """ResNet-50 keeps the CIFAR stem (no down-sampling before layer1; small images keep it cheap on CPU) and PVT
    pads MNIST to 32x32."""
    torch.manual_seed(0)
    model = build_model(backbone, head, shape, num_classes=10)
    if backbone == "resnet50":
        assert model.backbone.conv1.stride == (1, 1) and model.backbone.conv1.kernel_size == (3, 3)
        assert isinstance(model.backbone.maxpool, torch.nn.Identity)
    x, y = torch.randn(4, *shape), torch.arange(4)
    before, after, logits, features = one_step_lowers_loss(model, x, y, lr=1e-4)
    assert logits.shape == (4, 10) and features.shape == (4, dim)
    assert after < before


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="vgg"):
        build_backbone("vgg", (3, 32, 32))
