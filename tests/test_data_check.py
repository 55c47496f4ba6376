"""`harness data check` lists exactly the damaged videos and changes nothing."""
import os

import pytest

from harness.cli import main
from harness.data.check import check_items, probe_video
from harness.data.datasets import SyntheticMotionDataset


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    items = SyntheticMotionDataset(root=str(root / "data"), num_train=0, num_val=6).items()
    good = [it.path for it in items]
    blob = open(good[0], "rb").read()
    (root / "truncated.mp4").write_bytes(blob[: len(blob) // 3])
    (root / "noise.mp4").write_bytes(os.urandom(4000))
    (root / "empty.mp4").write_bytes(b"")
    paths = good[:3] + [str(root / "truncated.mp4"), str(root / "noise.mp4"), str(root / "empty.mp4"),
                        str(root / "missing.mp4")] + good[3:]
    (root / "list.txt").write_text("".join(f"{p} {i % 12}\n" for i, p in enumerate(paths)))
    return root, paths


def test_probe_classifies_each_video(damaged):
    root, paths = damaged
    assert probe_video(paths[0])[0] == "ok"
    assert probe_video(str(root / "missing.mp4")) == ("missing", "no such file")
    for name in ("truncated.mp4", "noise.mp4", "empty.mp4"):
        assert probe_video(str(root / name))[0] in ("corrupt", "empty")


def test_check_lists_exactly_the_damaged_videos_and_changes_nothing(damaged):
    from harness.data.annotations import read_video_list

    root, paths = damaged
    before = {p: os.path.getsize(p) for p in paths if os.path.exists(p)}
    result = check_items(read_video_list(str(root / "list.txt")), workers=2, progress=False)
    assert (result["listed"], result["ok"], result["missing"]) == (10, 6, 1)
    assert [os.path.basename(p["path"]) for p in result["problems"]] == [
        "truncated.mp4", "noise.mp4", "empty.mp4", "missing.mp4"]
    assert before == {p: os.path.getsize(p) for p in paths if os.path.exists(p)}


def test_cli_data_check_exit_code_and_listing(damaged, capsys):
    root, _ = damaged
    code = main(["data", "check", "video_list", "--set", f"ann_file={root / 'list.txt'}", "--set", "num_classes=12"])
    out = capsys.readouterr().out
    assert code == 1
    assert "10 listed, 6 ok, 1 missing" in out and "noise.mp4" in out and "truncated.mp4" in out
    assert main(["data", "check", "synthetic_motion", "--set", f"root={root / 'data'}", "--set", "num_train=0",
                 "--set", "num_val=6"]) == 0
    assert main(["data", "check", "video_lst"]) == 2
    assert "Did you mean: 'video_list'" in capsys.readouterr().err


REF_MEDIA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "protocol_media")


def test_a_decoder_returning_other_pixels_than_decord_is_reported():
    from harness.data.annotations import VideoItem
    from harness.data.decode import decoder_available, decoder_disagreement

    for name in ("decord", "pyav"):
        if not decoder_available(name)[0]:
            pytest.skip(f"{name} unavailable")
    mp4, avi = (os.path.join(REF_MEDIA, f) for f in ("k400_340x256.mp4", "ucf101_320x240.avi"))
    assert decoder_disagreement(mp4, "pyav", tolerance=0) is None  # H.264: the same pixels
    assert decoder_disagreement(avi, "decord") is None  # nothing to compare with
    why = decoder_disagreement(avi, "pyav")  # MPEG-4 part 2: FFmpeg builds differ by 2 levels here
    assert why and why.startswith("pyav returns other pixels than decord for frame ") and "max |diff| 2" in why
    report = check_items([VideoItem(path=mp4, label=0, index=0), VideoItem(path=avi, label=0, index=1)],
                         decoder="pyav", progress=False)
    assert report["ok"] == 1 and report["mismatch"] == 1
    assert [p["index"] for p in report["problems"]] == [1] and report["problems"][0]["status"] == "mismatch"
