"""Regenerate ``tests/reference/protocol_golden.npz`` (and the media under ``protocol_media/``) by running
the REFERENCE loaders: mmaction2 1.x + mmcv (K400, UCF101, Mini-K/HaltingVT) and VideoMAE (SSv2).

    PYTHONPATH=/path/to/opencv-site .venv/bin/python tests/reference/make_protocol_golden.py \\
        --mmaction2 /work/.mirror/open-mmlab+mmaction2/repo --mmcv /work/.mirror/open-mmlab+mmcv/repo \\
        --videomae /work/.mirror/MCG-NJU+VideoMAE/repo [--media] [--out PATH]

Each ``--x`` is a git directory of the reference (the search tool's ``fetch`` gives them); the files
are read with ``git show HEAD:path`` into a temporary folder and imported from there, next to small
stand-ins for what they import but do not use here (mmengine's file client and registries, mmcv's
``BaseTransform``, torchvision for VideoMAE's ``video_transforms``): no reference code is copied into
this repository. Needs opencv-python(-headless) (``pip install --target DIR opencv-python-headless``,
then ``PYTHONPATH=DIR``), decord, PyAV, numpy, torch, pandas, Pillow. Not run by the tests, which only
read the .npz (``tests/test_protocol_golden.py``).

Commits used for the committed golden: mmaction2 4d6c934 (1.2.0, ``mmaction/datasets/transforms/
loading.py``, ``processing.py``), mmcv a8073c7 (``mmcv/image/geometric.py``, ``io.py``), VideoMAE 14ef8d8
(``ssv2.py``, ``kinetics.py``, ``functional.py``, ``video_transforms.py``); opencv-python-headless 5.1.0.95 (4.10.0.84
gives the same bytes). Decoder of the golden: decord (``decord.VideoReader`` inside the reference
loaders); JPEG frames: cv2 (``mmcv.imfrombytes``).

``--media`` first (re)writes the test media with PyAV / Pillow: videos of realistic sizes with strong
edges (340x256, 320x240, a wide 480x200, a tall 256x340 H.264; a 427x240 VP9 webm like SSv2's; a
1920x1080 H.264 of 1.25 s) and two JPEG frame folders (340x256, 480x360). Without it the committed
media are used, so that the golden matches them.

Contents (uint8 views before normalisation, crops in the reference's own order):

* ``{case}/indices``: the frame indices the reference decoded, ``[num_clips, clip_len]``;
* ``{case}/views``: the reference views at frames ``FRAMES`` (first and last of each view) and rows
  and columns ``SEL`` (every 7th and the last), ``[views, 2, len(SEL), len(SEL), 3]``;
* ``{case}/crop_order``: mmaction2's ThreeCrop emits (start, end, centre), VideoMAE (start, centre, end);
* ``sweep/{protocol}``: reference frame indices for every frame count in ``sweep/counts``.

Protocols: ``k400`` / ``ucf101`` (mmaction2's VideoMAE K400 test pipeline), ``minik`` (HaltingVT's),
``ssv2`` (VideoMAE ``ssv2.py``) and ``k400vm`` (VideoMAE's own ``kinetics.py`` test set, which
VideoMAE's K400 and UCF101 numbers were measured with: the harness's ``sampler: videomae_dense,
spatial: videomae``).
"""
import argparse
import io
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MEDIA = os.path.join(HERE, "protocol_media")
OUT = os.path.join(HERE, "protocol_golden.npz")
SIZE = 224
SEL = np.r_[np.arange(0, SIZE, 7), SIZE - 1]
SWEEP_COUNTS = np.r_[np.arange(1, 131), [150, 199, 200, 250, 299, 300, 301, 333, 500, 1000, 1999, 2000]]

# (case, protocol, media file); protocol names are the harness datasets whose defaults they check
CASES = [
    ("k400_340x256", "k400", "k400_340x256.mp4"),
    ("k400_wide_480x200", "k400", "wide_480x200.mp4"),
    ("k400_tall_256x340", "k400", "tall_256x340.mp4"),
    ("k400_1920x1080", "k400", "hd_1920x1080.mp4"),
    ("ucf101_320x240", "ucf101", "ucf101_320x240.avi"),
    ("k400vm_340x256", "k400vm", "k400_340x256.mp4"),
    ("k400vm_1920x1080", "k400vm", "hd_1920x1080.mp4"),
    ("ucf101vm_320x240", "k400vm", "ucf101_320x240.avi"),
    ("ssv2_427x240", "ssv2", "ssv2_427x240.webm"),
    ("ssv2_340x256", "ssv2", "k400_340x256.mp4"),
    ("ssv2_tall_256x340", "ssv2", "tall_256x340.mp4"),
    ("ssv2_1920x1080", "ssv2", "hd_1920x1080.mp4"),
    ("minik_340x256", "minik", "minik_340x256"),
    ("minik_480x360", "minik", "minik_480x360"),
]
MINIK = {"minik_340x256": (340, 256, 9), "minik_480x360": (480, 360, 7)}  # width, height, listed total_frames
# (8 frames 32 apart over 9 or 7 frames loop through 8 or all 7 of them)


# ------------------------------------------------------------------------------------------------
# media
# ------------------------------------------------------------------------------------------------

def pattern(t: int, h: int, w: int) -> np.ndarray:
    """Frame ``t``: a static background of sharp edges (squares, one-pixel lines) that compresses well,
    a bar moving 7 px per frame and blocks whose colour and place depend on ``t`` (every frame differs)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    cell = max(8, min(h, w) // 8)
    board = ((yy // cell + xx // cell) % 2).astype(bool)
    img[board] = (235, 235, 235)
    img[~board] = (20, 30, 40)
    img[:, xx[0] % 23 == 5] = (255, 0, 0)
    img[yy[:, 0] % 19 == 3, :] = (0, 255, 0)
    bar = (xx >= (7 * t) % w) & (xx < (7 * t) % w + max(3, w // 30))
    img[bar] = (0, 0, 255)
    bh, bw = h // 6, w // 6
    for k in range(3):
        y0, x0 = (k * 37 + 5 * t) % (h - bh), (k * 53 + 3 * t) % (w - bw)
        img[y0:y0 + bh, x0:x0 + bw] = ((60 * k + 9 * t) % 256, (90 * k + 200) % 256, (150 * k + 17 * t) % 256)
    return img


def write_video(path: str, w: int, h: int, frames: int, codec: str = "libx264", rate: int = 25) -> None:
    import av

    with av.open(path, "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "28", "preset": "medium", "threads": "1"}
        for t in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern(t, h, w), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_media() -> None:
    from PIL import Image

    os.makedirs(MEDIA, exist_ok=True)
    write_video(os.path.join(MEDIA, "k400_340x256.mp4"), 340, 256, 70)
    write_video(os.path.join(MEDIA, "wide_480x200.mp4"), 480, 200, 40)
    write_video(os.path.join(MEDIA, "tall_256x340.mp4"), 256, 340, 40)
    write_video(os.path.join(MEDIA, "hd_1920x1080.mp4"), 1920, 1080, 20, rate=16)  # 1.25 s
    write_video(os.path.join(MEDIA, "ucf101_320x240.avi"), 320, 240, 66, codec="mpeg4")
    write_video(os.path.join(MEDIA, "ssv2_427x240.webm"), 427, 240, 45, codec="libvpx-vp9", rate=12)
    for name, (w, h, count) in MINIK.items():
        folder = os.path.join(MEDIA, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            Image.fromarray(pattern(i, h, w)).save(os.path.join(folder, f"img_{i + 1:05d}.jpg"), quality=80)


# ------------------------------------------------------------------------------------------------
# reference code, imported from the git directories with stand-ins
# ------------------------------------------------------------------------------------------------

def git_show(repo: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # a package, so that submodules can be registered under it
    sys.modules[name] = mod
    return mod


def install_standins() -> None:
    """What mmaction2 / mmcv / VideoMAE import at module level but do not use on the paths run here."""
    class FileClient:  # mmengine.fileio.FileClient with the disk backend
        def __init__(self, backend="disk", **kwargs):
            pass

        def get(self, path):
            with open(path, "rb") as f:
                return f.read()

    class Registry:
        def register_module(self, *args, **kwargs):
            return (lambda cls: cls) if not args or not isinstance(args[0], type) else args[0]

    class BaseTransform:
        def __call__(self, results):
            return self.transform(results)

    def is_seq_of(seq, expected_type, seq_type=None):
        return isinstance(seq, (list, tuple) if seq_type is None else seq_type) and all(
            isinstance(x, expected_type) for x in seq)

    module("mmengine", is_tuple_of=lambda s, t: is_seq_of(s, t, tuple), is_list_of=lambda s, t: is_seq_of(s, t, list),
           is_seq_of=is_seq_of)
    module("mmengine.fileio", FileClient=FileClient, get=FileClient().get)
    module("mmengine.utils", to_2tuple=lambda x: x if isinstance(x, tuple) else (x, x),
           is_filepath=lambda x: isinstance(x, (str, os.PathLike)), is_str=lambda x: isinstance(x, str))
    sys.modules["mmengine"].fileio = sys.modules["mmengine.fileio"]
    module("mmcv.transforms", BaseTransform=BaseTransform)
    module("mmcv.transforms.utils", cache_randomness=lambda f: f)
    module("mmaction")
    module("mmaction.registry", TRANSFORMS=Registry())
    module("mmaction.utils", get_random_string=lambda *a: "x", get_shm_dir=lambda: "/tmp", get_thread_id=lambda: 0)
    try:  # kinetics.py imports numpy's `disp` (unused), gone in numpy 2
        import numpy.lib.function_base  # noqa: F401
    except ImportError:
        sys.modules["numpy.lib.function_base"] = types.SimpleNamespace(disp=print)
    tv = module("torchvision")
    tv.transforms = module("torchvision.transforms")
    tv.transforms.functional = module("torchvision.transforms.functional")


def load_file(name: str, source: str, folder: str) -> types.ModuleType:
    import importlib.util

    path = os.path.join(folder, name.replace(".", "_") + ".py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_references(args, folder: str) -> dict:
    install_standins()
    mmcv = module("mmcv")
    module("mmcv.image")
    load_file("mmcv.image.io", git_show(args.mmcv, "mmcv/image/io.py"), folder)
    geometric = load_file("mmcv.image.geometric", git_show(args.mmcv, "mmcv/image/geometric.py"), folder)
    mmcv.imresize, mmcv.rescale_size = geometric.imresize, geometric.rescale_size
    mmcv.imfrombytes = sys.modules["mmcv.image.io"].imfrombytes
    mmcv.use_backend = sys.modules["mmcv.image.io"].use_backend
    loading = load_file("mm_loading", git_show(args.mmaction2, "mmaction/datasets/transforms/loading.py"), folder)
    processing = load_file("mm_processing", git_show(args.mmaction2, "mmaction/datasets/transforms/processing.py"),
                           folder)
    sys.path.insert(0, folder)
    for name in ("functional", "rand_augment", "random_erasing", "video_transforms", "volume_transforms"):
        load_file(name, git_show(args.videomae, f"{name}.py"), folder)
    ssv2 = load_file("ssv2", git_show(args.videomae, "ssv2.py"), folder)
    kinetics = load_file("kinetics", git_show(args.videomae, "kinetics.py"), folder)
    return {"loading": loading, "processing": processing, "ssv2": ssv2, "kinetics": kinetics}


# ------------------------------------------------------------------------------------------------
# running them
# ------------------------------------------------------------------------------------------------

MM_SAMPLING = {"k400": dict(clip_len=16, frame_interval=4, num_clips=5),
               "ucf101": dict(clip_len=16, frame_interval=4, num_clips=5),
               "minik": dict(clip_len=8, frame_interval=32, num_clips=1),
               "clip1x8": dict(clip_len=1, frame_interval=1, num_clips=8),
               "clip1x1": dict(clip_len=1, frame_interval=1, num_clips=1)}


def mmaction_case(ref: dict, protocol: str, path: str) -> tuple:
    """mmaction2 test pipeline: (indices [clips, T], views uint8 [V, T, S, S, 3])."""
    L, P = ref["loading"], ref["processing"]
    sampling = MM_SAMPLING[protocol]
    if protocol == "minik":  # HaltingVT configs/minik/data_pipeline_ml_8x32.py (mmaction2 RawframeDataset)
        results = {"frame_dir": path, "total_frames": MINIK[os.path.basename(path)][2], "start_index": 1, "filename_tmpl": "img_{:05}.jpg",
                   "modality": "RGB", "label": 0}
        steps = [L.SampleFrames(**sampling, test_mode=True), L.RawFrameDecode(),
                 P.Resize(scale=(-1, 256)), P.CenterCrop(crop_size=224)]
    else:  # configs/recognition/videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py
        results = {"filename": path, "start_index": 0, "modality": "RGB", "label": 0}
        steps = [L.DecordInit(), L.SampleFrames(**sampling, test_mode=True), L.DecordDecode(),
                 P.Resize(scale=(-1, 224)), P.ThreeCrop(crop_size=224)]
    for step in steps:
        results = step(results)
    clip_len, num_clips = sampling["clip_len"], sampling["num_clips"]
    indices = np.asarray(results["frame_inds"]).reshape(num_clips, clip_len) - results["start_index"]
    imgs = np.stack(results["imgs"])  # [crops * clips * T] crop-major (ThreeCrop extends per crop)
    crops = len(imgs) // (num_clips * clip_len)
    views = imgs.reshape(crops, num_clips, clip_len, *imgs.shape[1:]).transpose(1, 0, 2, 3, 4, 5)
    return indices, views.reshape(num_clips * crops, clip_len, *imgs.shape[1:])


def mm_sweep(ref: dict, protocol: str) -> np.ndarray:
    sampler = ref["loading"].SampleFrames(**MM_SAMPLING[protocol], test_mode=True)
    out = []
    for n in SWEEP_COUNTS:
        r = sampler({"total_frames": int(n), "start_index": 0})
        out.append(np.asarray(r["frame_inds"]).reshape(MM_SAMPLING[protocol]["num_clips"], -1))
    return np.stack(out).astype(np.int32)


def videomae_dataset(ref: dict, protocol: str, video: str, folder: str):
    """VideoMAE's test set as run_class_finetuning.py builds it (datasets.py): ``--data_set SSV2`` with
    ``--num_frames 16 --test_num_segment 2 --test_num_crop 3``, or ``Kinetics-400`` / ``UCF101`` with
    ``--num_frames 16 --sampling_rate 4 --test_num_segment 5 --test_num_crop 3``; ``--input_size 224
    --short_side_size 224``."""
    anno = os.path.join(folder, "test.csv")
    with open(anno, "w") as f:
        f.write(f"{video} 0\n")
    if protocol == "ssv2":
        ds = ref["ssv2"].SSVideoClsDataset(anno, "/", mode="test", clip_len=1, num_segment=16, test_num_segment=2,
                                           test_num_crop=3, num_crop=3, keep_aspect_ratio=True, crop_size=224,
                                           short_side_size=224, new_height=256, new_width=320, args=None)
    else:
        ds = ref["kinetics"].VideoClsDataset(anno, "/", mode="test", clip_len=16, frame_sample_rate=4, num_segment=1,
                                             test_num_segment=5, test_num_crop=3, num_crop=3, keep_aspect_ratio=True,
                                             crop_size=224, short_side_size=224, new_height=256, new_width=320,
                                             args=None)
    ds.data_transform = lambda buffer: buffer  # keep uint8: ClipToTensor + Normalize are (x/255-mean)/std
    return ds


def videomae_views(ref: dict, protocol: str, path: str, folder: str) -> np.ndarray:
    """All test views of one video, clip-major (VideoMAE's (chunk, split) pairs), ``[V, T, S, S, 3]``."""
    ds = videomae_dataset(ref, protocol, path, folder)
    views = {}
    for i in range(len(ds)):
        buffer, _, _, chunk, split = ds[i]
        views[(chunk, split)] = np.asarray(buffer)
    return np.stack([views[key] for key in sorted(views)])


def videomae_indices(ref: dict, protocol: str, num_frames: int, folder: str) -> np.ndarray:
    """The frame of every view position, from VideoMAE's own ``__getitem__``: its reader is replaced by
    one whose frames are 224x224 (no resize) and carry their index in channels 0 and 1."""
    module = ref["ssv2" if protocol == "ssv2" else "kinetics"]

    class IndexReader:
        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return num_frames

        def seek(self, pos):
            pass

        def get_batch(self, idx):
            idx = np.asarray(idx, np.int64)
            codes = np.stack([idx % 256, idx // 256, np.zeros_like(idx)], -1).astype(np.uint8)
            return types.SimpleNamespace(asnumpy=lambda: np.broadcast_to(codes[:, None, None, :],
                                                                         (len(idx), SIZE, SIZE, 3)))

    dummy = os.path.join(folder, "dummy.webm")
    if not os.path.exists(dummy):
        with open(dummy, "wb") as f:
            f.write(b"\0" * 2048)  # the loaders skip files under 1 KiB
    ds = videomae_dataset(ref, protocol, dummy, folder)
    real, module.VideoReader = module.VideoReader, IndexReader
    try:
        clips = {}
        for i in range(len(ds)):
            if ds.test_seg[i][1] == 0:  # one crop per clip is enough for the frames
                buffer, _, _, chunk, _ = ds[i]
                clips[chunk] = buffer[:, 0, 0, 0].astype(np.int64) + 256 * buffer[:, 0, 0, 1].astype(np.int64)
    finally:
        module.VideoReader = real
    return np.stack([clips[c] for c in sorted(clips)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmaction2", required=True)
    parser.add_argument("--mmcv", required=True)
    parser.add_argument("--videomae", required=True)
    parser.add_argument("--media", action="store_true", help="rewrite the test media first")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    if args.media:
        write_media()
    golden = {"sel": SEL, "frames_per_view": np.array([0, -1]), "sweep/counts": SWEEP_COUNTS.astype(np.int32)}
    with tempfile.TemporaryDirectory() as folder:
        ref = load_references(args, folder)
        for case, protocol, media in CASES:
            path = os.path.join(MEDIA, media)
            if protocol in ("ssv2", "k400vm"):
                views = videomae_views(ref, protocol, path, folder)
                indices = videomae_indices(ref, protocol, len(ref["ssv2"].VideoReader(path)), folder)
                order = [0, 1, 2]
            else:
                indices, views = mmaction_case(ref, protocol, path)
                order = [0, 2, 1] if views.shape[0] > indices.shape[0] else [0]
            assert views.shape[-3:] == (SIZE, SIZE, 3) and views.dtype == np.uint8, (case, views.shape, views.dtype)
            golden[f"{case}/indices"] = indices.astype(np.int32)
            golden[f"{case}/views"] = np.ascontiguousarray(views[:, [0, -1]][:, :, SEL][:, :, :, SEL])
            golden[f"{case}/crop_order"] = np.array(order, np.int8)
            print(case, views.shape, "indices", indices.shape)
        for protocol in MM_SAMPLING:
            golden[f"sweep/{protocol}"] = mm_sweep(ref, protocol)
        for protocol in ("ssv2", "k400vm"):
            golden[f"sweep/{protocol}"] = np.stack([videomae_indices(ref, protocol, int(n), folder)
                                                    for n in SWEEP_COUNTS]).astype(np.int32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **golden)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"wrote {args.out} ({len(buf.getvalue()) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
