"""Spatial test transforms: resize, crops, normalisation and view order."""
import pytest
import torch

from harness.data.registry import VideoProtocol
from harness.data.transforms import (center_crop, make_views, normalize, resize_short_side, short_side_size,
                                     three_crop, three_crop_offsets)


def column_frames(t, h, w):
    """uint8 [t, h, w, 3] whose value is the column index (and row index in channel 1)."""
    cols = torch.arange(w).view(1, 1, w).expand(t, h, w)
    rows = torch.arange(h).view(1, h, 1).expand(t, h, w)
    return torch.stack([cols, rows, cols], dim=-1).to(torch.uint8)


@pytest.mark.parametrize("hw, side, expected", [((48, 96), 32, (32, 64)), ((100, 60), 30, (50, 30)),
                                                ((90, 160), 224, (224, 398)), ((64, 64), 64, (64, 64))])
def test_resize_keeps_aspect(hw, side, expected):
    assert short_side_size(*hw, side) == expected
    out = resize_short_side(torch.zeros(2, *hw, 3, dtype=torch.uint8), side)
    assert tuple(out.shape) == (2, *expected, 3) and out.dtype == torch.uint8


def test_resize_preserves_constant_and_is_noop_at_size():
    x = torch.full((1, 40, 80, 3), 123, dtype=torch.uint8)
    assert (resize_short_side(x, 20) == 123).all()
    assert resize_short_side(x, 40) is x


def test_three_crop_positions_wide_and_tall():
    assert three_crop_offsets(32, 70, 32) == [(0, 0), (0, 19), (0, 38)]  # step (70-32)//2 = 19
    assert three_crop_offsets(71, 32, 32) == [(0, 0), (19, 0), (38, 0)]
    assert three_crop_offsets(40, 80, 32) == [(4, 0), (4, 24), (4, 48)]  # centred on the short side
    crops = three_crop(column_frames(2, 32, 70), 32)
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 19, 38]
    assert all(tuple(c.shape) == (2, 32, 32, 3) for c in crops)
    with pytest.raises(ValueError, match="does not fit"):
        three_crop(column_frames(1, 30, 70), 32)


def test_center_crop_offsets():
    crop = center_crop(column_frames(1, 40, 81), 32)
    assert int(crop[0, 0, 0, 0]) == 24 and int(crop[0, 0, 0, 1]) == 4  # (81-32)//2, (40-32)//2


def test_normalize_values_and_layout():
    x = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 255, 0, 51
    out = normalize(x, mean=[0.5, 0.0, 0.1], std=[0.25, 1.0, 0.5])
    assert out.shape == (3, 2, 4, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([2.0, 0.0, (0.2 - 0.1) / 0.5]))


def test_make_views_is_clip_major():
    p = VideoProtocol(num_clips=2, num_crops=3, clip_len=2, short_side=32, crop_size=32, mean=[0, 0, 0], std=[1, 1, 1])
    clip0 = column_frames(2, 32, 70)
    clip1 = clip0.clone()
    clip1[..., 2] = 200  # channel 2 tells the clips apart
    views = make_views(torch.stack([clip0, clip1]), p)
    assert views.shape == (6, 3, 2, 32, 32)
    for v in range(6):
        clip, crop = divmod(v, 3)
        assert round(float(views[v, 0, 0, 0, 0]) * 255) == [0, 19, 38][crop]
        assert round(float(views[v, 2, 0, 0, 0]) * 255) == ([0, 19, 38][crop] if clip == 0 else 200)


def test_make_views_resizes_then_centre_crops():
    p = VideoProtocol(num_clips=1, num_crops=1, clip_len=3, short_side=32, crop_size=24)
    views = make_views([torch.zeros(3, 64, 128, 3, dtype=torch.uint8)], p)
    assert views.shape == (1, 3, 3, 24, 24)
    with pytest.raises(ValueError, match="num_clips"):
        make_views([torch.zeros(3, 64, 128, 3, dtype=torch.uint8)] * 2, p)


def test_spatial_protocols_size_and_crop_like_their_references():
    from harness.data.transforms import resized_size

    assert resized_size(256, 340, 224, "mmaction2") == (224, 298)  # mmcv rounds 297.5
    assert resized_size(256, 340, 224, "videomae") == (224, 297)  # VideoMAE floors it
    assert resized_size(340, 256, 224, "videomae") == (297, 224)
    assert resized_size(224, 340, 224, "videomae") == (224, 340)  # short side already 224: untouched
    assert three_crop_offsets(224, 298, 224, "mmaction2") == [(0, 0), (0, 37), (0, 74)]
    assert three_crop_offsets(224, 297, 224, "videomae") == [(0, 0), (0, 36), (0, 73)]
    assert three_crop_offsets(297, 224, 224, "videomae") == [(0, 0), (36, 0), (73, 0)]
    assert three_crop_offsets(224, 224, 224, "videomae") == [(0, 0)] * 3
    assert center_crop(column_frames(1, 2, 9), 2, "videomae")[0, 0, :, 0].tolist() == [4, 5]  # round(3.5) = 4
    assert center_crop(column_frames(1, 2, 9), 2, "mmaction2")[0, 0, :, 0].tolist() == [3, 4]  # 7 // 2 = 3


def test_spatial_defaults_and_keys():
    from harness.data.datasets import SyntheticMotionDataset
    from harness.data.minik import MiniKineticsDataset
    from harness.data.real import Kinetics400Dataset, SSv2Dataset, UCF101Dataset
    from harness.data.registry import strip_unkeyed_fields

    assert [d(ann_file="x").spatial for d in (Kinetics400Dataset, UCF101Dataset, MiniKineticsDataset, SSv2Dataset)] \
        == ["mmaction2", "mmaction2", "mmaction2", "videomae"]
    assert SyntheticMotionDataset().spatial == "torch_antialias"
    assert "spatial" not in strip_unkeyed_fields({"spatial": "torch_antialias"})  # what older keys meant
    assert strip_unkeyed_fields({"spatial": "mmaction2"}) == {"spatial": "mmaction2"}
    problems = VideoProtocol(spatial="videomae", num_crops=3, short_side=256, crop_size=224).check()
    assert any("spatial videomae takes its three crops at the short side" in p for p in problems)
    assert any("spatial must be one of" in p for p in VideoProtocol(spatial="cv2").check())
