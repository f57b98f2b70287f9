"""Backbone (ResNet + FPN): shapes, torchvision-named state_dict loading from a local file, frozen stages."""

import pytest
import torch

from dima_core.models.backbone import FPN, ImageBackbone, ResNet, load_torchvision_resnet
from dima_core.models.config import BackboneConfig

torch.set_num_threads(1)


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_resnet_stage_shapes(depth, channels):
    net = ResNet(depth).eval()
    with torch.no_grad():
        outs = net(torch.rand(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == channels
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_torchvision_parameter_names():
    names = set(ResNet(50).state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.bn3.num_batches_tracked",
    ):
        assert key in names
    assert "layer2.0.downsample.0.weight" in set(ResNet(18).state_dict())


def test_fpn_levels_and_extra():
    cfg = BackboneConfig(depth=18, out_stages=(2, 3, 4), num_extra_levels=1, fpn_channels=16)
    bb = ImageBackbone(cfg).eval()
    with torch.no_grad():
        outs = bb(torch.rand(2, 3, 64, 128))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 16), (2, 16, 4, 8), (2, 16, 2, 4), (2, 16, 1, 2)]
    assert len(FPN([8, 16], 4).lateral_convs) == 2


def test_load_torchvision_state_dict_from_local_file(tmp_path):
    src = ResNet(18)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)

    # full model: everything but fc loads
    dst = ResNet(18)
    report = load_torchvision_resnet(dst, path)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert torch.equal(dst.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])

    # a backbone built up to C4 skips layer4; configured path loads through ImageBackbone
    cfg = BackboneConfig(depth=18, out_stages=(3,), fpn_channels=8, pretrained_path=str(path))
    bb = ImageBackbone(cfg)
    assert any(k.startswith("layer4.") for k in bb.load_report.skipped)
    assert torch.equal(bb.resnet.conv1.weight, state["conv1.weight"])

    # missing keys are reported clearly and raise in strict mode
    partial = {k: v for k, v in state.items() if not k.startswith("layer2.")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": partial}, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="missing .*layer2"):
        load_torchvision_resnet(ResNet(18), tmp_path / "partial.pth")
    report = load_torchvision_resnet(ResNet(18), tmp_path / "partial.pth", strict=False)
    assert report.unexpected == ["extra.weight"] and all(k.startswith("layer2.") for k in report.missing)
    with pytest.raises(RuntimeError, match="mismatched"):
        load_torchvision_resnet(ResNet(50), path)
    with pytest.raises(FileNotFoundError):
        load_torchvision_resnet(ResNet(18), tmp_path / "absent.pth")


def test_frozen_stages_and_norm_eval():
    bb = ImageBackbone(BackboneConfig(depth=18, frozen_stages=1, norm_eval=True, fpn_channels=8))
    bb.train()
    assert not bb.resnet.conv1.weight.requires_grad and not bb.resnet.layer1[0].conv1.weight.requires_grad
    assert bb.resnet.layer2[0].conv1.weight.requires_grad
    assert not bb.resnet.layer3[0].bn1.training and bb.fpn.training
