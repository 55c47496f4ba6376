"""Every claimed test protocol against its reference loader's own output (tests/reference/protocol_golden.npz,
made by tests/reference/make_protocol_golden.py from mmaction2 + mmcv and VideoMAE with decord): the same
frame indices, and views within 1 level (of 255) before normalisation, with each decoder.

``python tests/test_protocol_golden.py`` prints the max |diff| per case and decoder, for the defaults
and for ``spatial: torch_antialias`` (the resize the harness used before).
"""
import os

import numpy as np
import pytest
import torch

from harness.data.annotations import FrameFolderItem, VideoItem
from harness.data.decode import decoder_available
from harness.data.minik import MiniKineticsDataset
from harness.data.real import Kinetics400Dataset, SSv2Dataset, UCF101Dataset
from harness.data.sampling import dense_test_indices, uniform_test_indices, videomae_dense_test_indices
from harness.data.video_dataset import VideoDataset

REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
GOLDEN = np.load(os.path.join(REF, "protocol_golden.npz"), allow_pickle=False)
MEDIA = os.path.join(REF, "protocol_media")
CASES = sorted({k.split("/")[0] for k in GOLDEN.files if k.endswith("/views")})
PROTOCOLS = {"k400": Kinetics400Dataset, "ucf101": UCF101Dataset, "ssv2": SSv2Dataset, "minik": MiniKineticsDataset,
             "k400vm": Kinetics400Dataset, "ucf101vm": UCF101Dataset}
VIDEOMAE_K400 = {"sampler": "videomae_dense", "spatial": "videomae"}  # VideoMAE's own kinetics.py (a named option)
MEDIA_OF = {"k400_340x256": "k400_340x256.mp4", "k400_wide_480x200": "wide_480x200.mp4",
            "k400_tall_256x340": "tall_256x340.mp4", "k400_1920x1080": "hd_1920x1080.mp4",
            "ucf101_320x240": "ucf101_320x240.avi", "ssv2_427x240": "ssv2_427x240.webm",
            "ssv2_340x256": "k400_340x256.mp4", "ssv2_tall_256x340": "tall_256x340.mp4",
            "ssv2_1920x1080": "hd_1920x1080.mp4", "minik_340x256": "minik_340x256", "minik_480x360": "minik_480x360",
            "k400vm_340x256": "k400_340x256.mp4", "k400vm_1920x1080": "hd_1920x1080.mp4",
            "ucf101vm_320x240": "ucf101_320x240.avi"}
MINIK_FRAMES = {"minik_340x256": 9, "minik_480x360": 7}
DECODERS = ["decord", "pyav"]


def protocol_for(case: str, **overrides):
    name = case.split("_")[0]
    fields = {"ann_file": "unused.txt", **({"ann_format": "mmaction"} if name.startswith("ucf101") else {}),
              **(VIDEOMAE_K400 if name.endswith("vm") else {})}
    return PROTOCOLS[name](**{**fields, **overrides})


def harness_levels(case: str, decoder: str, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, views as levels 0..255 ``[V, 2, len(sel), len(sel), 3]`` at the golden's frames,
    rows and columns) through ``VideoDataset.load_views``, the evaluation's own path."""
    protocol = protocol_for(case, decoder=decoder, **overrides)
    path = os.path.join(MEDIA, MEDIA_OF[case])
    if case.startswith("minik"):
        item = FrameFolderItem(path=path, label=0, index=0, num_frames=MINIK_FRAMES[case])
        num_frames = MINIK_FRAMES[case]
    else:
        from harness.data.decode import decoder_backend

        item = VideoItem(path=path, label=0, index=0)
        seen: list = []  # counted with PyAV here (decord only ever loads in the decode workers)
        decoder_backend("pyav")(path, lambda n: (seen.append(n), np.array([0]))[1])
        num_frames = seen[0]
    data = VideoDataset([item], protocol)
    sel = torch.from_numpy(GOLDEN["sel"]).long()
    views = data.load_views(item)[:, :, GOLDEN["frames_per_view"].tolist()][..., sel, :][..., sel]
    mean = np.asarray(protocol.mean, np.float64).reshape(1, 3, 1, 1, 1)
    std = np.asarray(protocol.std, np.float64).reshape(1, 3, 1, 1, 1)
    levels = np.rint((views.numpy().astype(np.float64) * std + mean) * 255.0).transpose(0, 2, 3, 4, 1)
    return data.frame_indices(num_frames), levels


def max_diff(case: str, decoder: str, **overrides) -> float:
    """Max |harness - reference| in levels on the golden's frames, rows and columns of every view."""
    _, levels = harness_levels(case, decoder, **overrides)
    golden = GOLDEN[f"{case}/views"].astype(np.float64)
    order = GOLDEN[f"{case}/crop_order"]  # golden crop p of a clip is the harness's crop order[p]
    crops = len(order)
    mine = np.stack([levels[(v // crops) * crops + int(order[v % crops])] for v in range(golden.shape[0])])
    return float(np.abs(mine - golden).max())


def _skip_unavailable(decoder: str) -> None:
    ok, why = decoder_available(decoder)
    if not ok:
        pytest.skip(f"decoder {decoder} unavailable: {why}")


@pytest.mark.parametrize("case,decoder", [(c, d) for c in CASES for d in (["frames"] if c.startswith("minik") else DECODERS)])
def test_views_equal_the_reference_loader(case, decoder):
    """Frame folders are read with Pillow whatever the decoder; the golden decoded them with cv2."""
    if decoder != "frames":
        _skip_unavailable(decoder)
    else:
        decoder = "decord"
    indices, _ = harness_levels(case, decoder)
    np.testing.assert_array_equal(indices, GOLDEN[f"{case}/indices"])
    assert max_diff(case, decoder) <= 1.0


def test_the_previous_resize_is_far_from_the_reference():
    """The golden can tell the antialiased resize (the harness's before) from cv2's."""
    assert max_diff("k400_1920x1080", "decord", spatial="torch_antialias") > 20
    assert max_diff("ssv2_340x256", "decord", spatial="mmaction2") > 20  # mmcv rounding and offsets, not VideoMAE's


@pytest.mark.parametrize("name,clip_len,frame_interval,num_clips", [
    ("k400", 16, 4, 5), ("ucf101", 16, 4, 5), ("minik", 8, 32, 1), ("clip1x8", 1, 1, 8), ("clip1x1", 1, 1, 1)])
def test_dense_indices_equal_sample_frames(name, clip_len, frame_interval, num_clips):
    counts, golden = GOLDEN["sweep/counts"], GOLDEN[f"sweep/{name}"]
    for n, expected in zip(counts.tolist(), golden):
        np.testing.assert_array_equal(dense_test_indices(n, clip_len, frame_interval, num_clips), expected,
                                      err_msg=f"{name}, {n} frames")


def test_uniform_indices_equal_videomae_ssv2():
    counts, golden = GOLDEN["sweep/counts"], GOLDEN["sweep/ssv2"]
    for n, expected in zip(counts.tolist(), golden):
        np.testing.assert_array_equal(uniform_test_indices(n, 16, 2), expected, err_msg=f"{n} frames")


def test_videomae_dense_indices_equal_videomae_kinetics():
    counts, golden = GOLDEN["sweep/counts"], GOLDEN["sweep/k400vm"]
    for n, expected in zip(counts.tolist(), golden):
        np.testing.assert_array_equal(videomae_dense_test_indices(n, 16, 4, 5), expected, err_msg=f"{n} frames")
    assert sum(not np.array_equal(dense_test_indices(n, 16, 4, 5), g) for n, g in zip(counts.tolist(), golden)) > 100


if __name__ == "__main__":
    print(f"{'case':22s} {'decoder':8s} {'default':>8s} {'torch_antialias':>16s}")
    for case in CASES:
        for decoder in (["decord"] if case.startswith("minik") else DECODERS):
            if not decoder_available(decoder)[0]:
                continue
            before = max_diff(case, decoder, spatial="torch_antialias")
            print(f"{case:22s} {decoder:8s} {max_diff(case, decoder):8.0f} {before:16.0f}")
