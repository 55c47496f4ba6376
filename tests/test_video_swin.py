"""Video Swin (harness.models.video_swin) against torchvision's swin3d, and its MAC count against fvcore."""
import pytest
import torch

from harness.measure.flops import fvcore_macs
from harness.models.presets import VideoSwinConfig, backbone_registry, resolve_config
from harness.models.swin_checkpoint import convert_official, convert_torchvision, load_swin_checkpoint
from harness.models.timm_import import import_timm
from harness.models.video_swin import VideoSwin, swin_macs

import_timm()  # torchvision on a CPU torch (harness/models/timm_import.py)
from torchvision.models.video.swin_transformer import SwinTransformer3d  # noqa: E402

# (frames, side, window): no padding; clamped windows; padding in time and space
SHAPES = [(8, 64, (8, 7, 7)), (16, 64, (4, 4, 4)), (6, 50, (8, 7, 7))]


def _pair(frames, side, window, seed=0):
    torch.manual_seed(seed)
    tv = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                           window_size=list(window), num_classes=10).eval()
    for p in tv.parameters():  # random, not torchvision's init (its biases start at zero)
        p.data.normal_(0, 0.2)
    cfg = VideoSwinConfig(embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 2, 4), window_size=window,
                          num_frames=frames, img_size=side, num_classes=10)
    return tv, cfg


@pytest.mark.parametrize("frames,side,window", SHAPES)
def test_logits_equal_torchvision(tmp_path, frames, side, window):
    tv, cfg = _pair(frames, side, window)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    ours = VideoSwin(cfg).eval()
    assert load_swin_checkpoint(ours, str(path)) == "torchvision"
    clip = torch.randn(2, 3, frames, side, side)
    with torch.no_grad():
        assert torch.allclose(ours(clip), tv(clip), atol=1e-5, rtol=0)


def test_official_and_mmaction2_layouts_load(tmp_path):
    tv, cfg = _pair(8, 64, (8, 7, 7))
    ours = VideoSwin(cfg).eval()
    load_swin_checkpoint(ours, _save(tmp_path / "tv.pth", tv.state_dict()))
    official = _official_names(ours)  # our names -> the official repository's
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        want = ours(clip)
    for layout, final in (("official", "backbone.norm"), ("mmaction2", "backbone.norm3")):
        state = {k.replace("backbone.norm.", final + "."): v for k, v in official.items()}
        other = VideoSwin(cfg).eval()
        assert load_swin_checkpoint(other, _save(tmp_path / f"{layout}.pth", {"state_dict": state})) == layout
        with torch.no_grad():
            assert torch.equal(other(clip), want)


def _official_names(model):
    out = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if parts[0] == "stages":
            k = f"backbone.layers.{parts[1]}.blocks.{'.'.join(parts[3:])}"
        elif parts[0] == "merges":
            k = f"backbone.layers.{parts[1]}.downsample.{'.'.join(parts[2:])}"
        elif parts[0] == "head":
            k = "cls_head.fc_cls." + parts[1]
        else:
            k = "backbone." + k
        out[k] = v
    assert convert_official(out).keys() == model.state_dict().keys()
    return out


def _save(path, state):
    torch.save(state, path)
    return str(path)


def test_torchvision_converter_names_every_key():
    tv, cfg = _pair(8, 64, (8, 7, 7))
    names = {k for k in convert_torchvision(tv.state_dict()) if not k.endswith("relative_position_index")}
    assert names == set(VideoSwin(cfg).state_dict())


@pytest.mark.parametrize("frames,side,window", SHAPES)
def test_analytic_macs_equal_fvcore_on_torchvision_and_ours(frames, side, window):
    tv, cfg = _pair(frames, side, window)
    clip = torch.randn(1, 3, frames, side, side)
    theirs, _ = fvcore_macs(tv, clip)
    ours, unexpected = fvcore_macs(VideoSwin(cfg).eval(), clip)
    assert theirs == ours == swin_macs(cfg).total
    assert unexpected == {}


@pytest.mark.parametrize("name,gflops", [("videoswin_t", 88), ("videoswin_s", 166), ("videoswin_b", 282),
                                         ("videoswin_b_ssv2", 321)])
def test_published_dense_gflops(name, gflops):
    """Video Swin's "GFLOPs" (32x224, one view) are fvcore MAC counts."""
    assert abs(swin_macs(resolve_config(name)).total / 1e9 - gflops) < 0.5


def test_presets_registered():
    assert {"videoswin_t", "videoswin_s", "videoswin_b"} <= set(backbone_registry.names())
    assert resolve_config("videoswin_t", depths=[2, 2, 2, 2]).depths == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="no dimension"):
        resolve_config("videoswin_t", tubelet_size=2)
