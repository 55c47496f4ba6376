"""Backbone presets: named architectures of the video ViT families and of Video Swin (torch-free).

A preset is a function returning a ``VideoViTConfig`` (or, for Video Swin, a ``VideoSwinConfig``: its own
class, whose fields are its suite keys); ``build_model`` applies keyword overrides on top. ``video_vit`` is
the generic entry whose dims all come from the caller.

A config's ``family`` fixes what a token-reduction method must respect -- its ``TokenLayout``: class
tokens, how positions enter, joint or divided space-time attention, the token order and the pooling.
Reducers read the layout when they bind; methods declare which layout features they support
(``methods.registry``), and ``validate`` refuses the others with the reason.
"""
from __future__ import annotations

import dataclasses
import typing as tp

from harness.registry import Registry


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """How a family's tokens are laid out, as a token-reduction method sees them."""

    family: str
    cls_tokens: int  # class tokens before the patch tokens; never merged, pruned or halted
    position: str  # "sinusoid" (fixed table added once) | "learned" | "learned_space_time" (TimeSformer) | "rope3d"
    #                "relative_bias" (Video Swin: a learned bias per relative offset inside a window)
    attention: str  # "joint" (all tokens) | "divided" (temporal per patch position, then spatial per frame)
    #                 | "windowed" (Video Swin: shifted 3-D windows)
    order: str  # patch-token order: "thw" (time-major) | "hwt" (patch-major, time-minor: TimeSformer)
    pooling: str  # "mean" (over tokens, then fc_norm) | "cls" (final norm, class token) | "attentive" (probe)
    grid: tp.Tuple[int, int, int]  # (T', H', W') patch-token grid (of the first stage when hierarchical)
    stages: int = 1  # resolution stages (Video Swin: 4, patch merging between them); 1 = a plain ViT

    @property
    def features(self) -> tp.FrozenSet[str]:
        """What a method must support to run on this layout (VideoMAE's layout has none)."""
        out = set()
        if self.cls_tokens:
            out.add("cls_token")
        if self.attention == "divided":
            out.add("divided_attention")
        if self.position == "rope3d":
            out.add("rope3d")
        if self.pooling == "attentive":
            out.add("attentive_pool")
        if self.attention == "windowed":
            out.add("windowed_attention")
        if self.stages > 1:
            out.add("hierarchical")
        return frozenset(out)

    def tokens_handed(self, tokens: int) -> int:
        """Tokens a reducer is handed per sample when ``tokens`` (class tokens included) enter a block."""
        if self.attention == "divided":
            return (tokens - self.cls_tokens) // self.grid[0]
        return tokens

    @property
    def protected(self) -> int:
        """Leading tokens of the sequence a reducer is handed that it must keep as they are: the class
        tokens under joint attention; none under divided attention, where the reducer is handed the
        patch tokens of each frame and the class token stays with the block (Pollard & Wray's rule)."""
        return self.cls_tokens if self.attention == "joint" else 0


# what a token-reduction method may have to handle, with the reason a method that does not is refused
LAYOUT_FEATURES = {
    "cls_token": "a class token that must never be merged or pruned",
    "divided_attention": "divided space-time attention, which needs the same token count in every frame",
    "rope3d": "3-D rotary positions that every remaining token must keep",
    "attentive_pool": "an attentive-probe head over the final tokens",
    "windowed_attention": "shifted 3-D window attention (Video Swin): every block re-partitions the whole token "
                          "grid into windows, so a token cannot simply leave the sequence or merge across windows",
    "hierarchical": "hierarchical stages joined by patch merging (Video Swin), which needs the whole token grid "
                    "of its stage (and there is no class token to pool)",
}


class _FamilyTitles(tp.Mapping[str, str]):
    """family -> the library model it reproduces: every registered ViT family (``harness.models.families``,
    read when asked, so a family registered later is listed too), then Video Swin."""

    def _titles(self) -> tp.Dict[str, str]:
        return {**{n: families.get_family(n).reproduces for n in families.family_registry.names()},
                "videoswin": "Video Swin (torchvision swin3d; its own config class, VideoSwinConfig)"}

    def __getitem__(self, family: str) -> str:
        return self._titles()[family]

    def __iter__(self) -> tp.Iterator[str]:
        return iter(self._titles())

    def __len__(self) -> int:
        return len(self._titles())


FAMILIES: tp.Mapping[str, str] = _FamilyTitles()


def _layout_fields(family: str) -> tp.Tuple[int, str, str, str, str]:
    return families.get_family(family).layout


def family_features(family: str) -> tp.FrozenSet[str]:
    """The layout features of ``family`` (what a method must support to run on it)."""
    if family == "videoswin":
        return VideoSwinConfig().layout.features
    return TokenLayout(family, *_layout_fields(family), (1, 1, 1)).features


# V-JEPA 2's attentive probe: transformers builds its MLPs with VJEPA2MLP's default ratio, not config.mlp_ratio
PROBE_MLP_RATIO = 4.0
ACTIVATIONS = ("gelu", "gelu_fast")  # erf GELU | transformers' FastGELUActivation (tanh form; ViViT)


@dataclasses.dataclass
class VideoViTConfig:
    """Architecture of a video ViT of one of the ``FAMILIES`` (default: VideoMAE -- no CLS token, fixed
    sinusoid positions, mean pool)."""

    embed_dim: int = 768  # channels C
    depth: int = 12  # number of transformer blocks
    num_heads: int = 12  # attention heads
    patch_size: int = 16  # spatial patch side, pixels
    tubelet_size: int = 2  # frames per temporal patch
    num_frames: int = 16  # input frames T
    img_size: int = 224  # input side, pixels
    num_classes: int = 400  # classifier outputs (0 = no head)
    in_chans: int = 3  # input channels
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * C
    qkv_bias: bool = True  # separate q and v biases, as VideoMAE (k bias is zero)
    norm_eps: float = 1e-6  # LayerNorm epsilon
    fc_norm_eps: tp.Optional[float] = None  # epsilon of the norm after pooling; None = norm_eps (transformers: 1e-5)
    fused_attention: bool = True  # SDPA kernel wherever no probabilities are needed; False = explicit softmax everywhere (the official code's numerics)
    family: str = "videomae"  # token layout and layers: one of FAMILIES
    act: str = "gelu"  # MLP activation: one of ACTIVATIONS
    probe_layers: int = 0  # vjepa2: self-attention layers of the attentive probe before its cross-attention

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T', H', W') token grid."""
        side = self.img_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def probe_mlp_ratio(self) -> float:
        """MLP ratio of the attentive probe's layers (fixed by transformers, whatever ``mlp_ratio`` says)."""
        return PROBE_MLP_RATIO

    @property
    def num_tokens(self) -> int:
        """Patch tokens (class tokens not included)."""
        t, h, w = self.grid
        return t * h * w

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout(self.family, *_layout_fields(self.family), self.grid)

    def check(self) -> list[str]:
        problems = []
        if self.family not in families.family_registry:  # videoswin has its own config class
            return [families.unknown_family_message(self.family)]
        if self.act not in ACTIVATIONS:
            problems.append(f"act {self.act!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.probe_layers < 0 or (self.probe_layers and self.layout.pooling != "attentive"):
            problems.append(f"probe_layers {self.probe_layers}: only an attentive probe (vjepa2) has them (>= 0)")
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "num_frames",
                     "img_size", "in_chans"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if problems:
            return problems
        from harness.models.bounds import number_problems

        problems = [message for _, message in number_problems(dataclasses.asdict(self))]
        if problems:
            return problems
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            problems.append(
                f"num_frames {self.num_frames} is not a multiple of tubelet_size {self.tubelet_size}")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0, got {self.num_classes}")
        return problems


DIM_NAMES = tuple(f.name for f in dataclasses.fields(VideoViTConfig))

backbone_registry: Registry[tp.Callable[[], tp.Any]] = Registry("backbone")


def config_class(name: str) -> type:
    """The config dataclass of backbone ``name`` (``VideoViTConfig`` or ``VideoSwinConfig``); its fields
    are the backbone's valid suite keys."""
    return type(backbone_registry.get(name)())


def dim_names(name: str) -> tp.Tuple[str, ...]:
    """The architecture overrides backbone ``name`` accepts (the fields of its config class)."""
    return tuple(f.name for f in dataclasses.fields(config_class(name)))


def register_backbone(name: str, **meta: tp.Any):
    return backbone_registry.register(name, **meta)


def resolve_config(name: str, **overrides: tp.Any) -> tp.Any:
    """Preset ``name`` with ``overrides`` applied (``None`` values mean "keep the preset's").

    Any config class works that offers ``num_frames, img_size, num_classes, in_chans, family, layout``
    and ``check()``: ``VideoViTConfig`` (the ViT families) or ``VideoSwinConfig`` (Video Swin)."""
    preset = backbone_registry.get(name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    valid = dim_names(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"backbone {name!r} has no dimension(s) {unknown}; valid: {', '.join(valid)}")
    cfg = dataclasses.replace(preset(), **overrides)
    if name == "video_vit":
        missing = [k for k in ("embed_dim", "depth", "num_heads") if k not in overrides]
        if missing:
            raise ValueError(f"backbone 'video_vit' needs {', '.join(missing)} (no preset defaults)")
    problems = cfg.check()
    if problems:
        raise ValueError(f"backbone {name!r}: " + "; ".join(problems))
    return cfg


@register_backbone("video_vit", summary="generic joint space-time ViT; give every dim")
def video_vit() -> VideoViTConfig:
    return VideoViTConfig()


@register_backbone("videomae_vit_s16", summary="VideoMAE ViT-S/16, 16x224, tubelet 2 (22 M)")
def videomae_vit_s16() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=384, depth=12, num_heads=6)


@register_backbone("videomae_vit_b16", summary="VideoMAE ViT-B/16, 16x224, tubelet 2 (87 M)")
def videomae_vit_b16() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=768, depth=12, num_heads=12)


@register_backbone("videomae_vit_l16", summary="VideoMAE ViT-L/16, 16x224, tubelet 2 (304 M)")
def videomae_vit_l16() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=1024, depth=24, num_heads=16)


# VideoMAE V2 distilled classifiers (Wang et al., CVPR'23): the same ViT as VideoMAE v1 (q/v biases, sinusoid
# positions, mean pool + fc_norm, LN eps 1e-6), students of V2-g distilled on K710. mmaction2's ports
# (configs/recognition/videomaev2/) have a K400 head; the official files a K710 head, converted on load.
@register_backbone("videomaev2_vit_s16",
                   summary="VideoMAE V2 ViT-S/16 distilled from V2-g, K400 head, 16x224, tubelet 2 (22 M)")
def videomaev2_vit_s16() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=384, depth=12, num_heads=6)


@register_backbone("videomaev2_vit_b16",
                   summary="VideoMAE V2 ViT-B/16 distilled from V2-g, K400 head, 16x224, tubelet 2 (87 M)")
def videomaev2_vit_b16() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=768, depth=12, num_heads=12)


@register_backbone("synthetic_vit_tiny",
                   summary="quickstart: 128-d, 4 blocks, 2 heads, 16x64, 12 classes (1 M)")
def synthetic_vit_tiny() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=128, depth=4, num_heads=2, img_size=64, num_classes=12)


# synthetic_vit_tiny made deep enough that HaltingVT has several halting decisions per token (6 halting blocks
# after its 2 Glimpser blocks; the 4-block model leaves it one, so its cost can hardly vary per video).
@register_backbone("synthetic_vit_d8",
                   summary="synthetic_vit_tiny with 8 blocks: 128-d, 2 heads, 16x64, 12 classes (1.8 M)")
def synthetic_vit_d8() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=128, depth=8, num_heads=2, img_size=64, num_classes=12)


# ViViT model 1 (Arnab et al., ICCV'21; spatio-temporal attention): google/vivit-b-16x2-kinetics400 in transformers
@register_backbone("vivit_b16x2_k400",
                   summary="ViViT-B/16x2 model 1 (joint, CLS, learned positions), 32x224, tubelet 2, K400 (89 M)")
def vivit_b16x2_k400() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=768, depth=12, num_heads=12, num_frames=32, family="vivit", act="gelu_fast")


# TimeSformer (Bertasius et al., ICML'21), divided space-time: facebook/timesformer-{base,hr}-finetuned-{k400,ssv2}
@register_backbone("timesformer_base_k400",
                   summary="TimeSformer base (divided space-time, CLS), 8x224, K400 (121 M)")
def timesformer_base_k400() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=768, depth=12, num_heads=12, tubelet_size=1, num_frames=8, family="timesformer")


@register_backbone("timesformer_base_ssv2",
                   summary="TimeSformer base (divided space-time, CLS), 8x224, SSv2 (174 classes)")
def timesformer_base_ssv2() -> VideoViTConfig:
    return dataclasses.replace(timesformer_base_k400(), num_classes=174)


@register_backbone("timesformer_hr_k400",
                   summary="TimeSformer-HR (divided space-time, CLS), 16x448, K400")
def timesformer_hr_k400() -> VideoViTConfig:
    return dataclasses.replace(timesformer_base_k400(), num_frames=16, img_size=448)


@register_backbone("timesformer_hr_ssv2",
                   summary="TimeSformer-HR (divided space-time, CLS), 16x448, SSv2 (174 classes)")
def timesformer_hr_ssv2() -> VideoViTConfig:
    return dataclasses.replace(timesformer_hr_k400(), num_classes=174)


# the divided-attention quickstart backbone: a TimeSformer (CLS token, learned space + time positions, divided
# space-time attention, CLS head) at synthetic_vit_tiny's size; tubelet 2 keeps the 16-frame clips at 8 x 16 tokens
@register_backbone("synthetic_timesformer_tiny",
                   summary="TimeSformer-layout (CLS, divided space-time): 128-d, 4 blocks, 2 heads, 16x64, "
                           "tubelet 2, 12 classes (1.3 M)")
def synthetic_timesformer_tiny() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=128, depth=4, num_heads=2, img_size=64, num_classes=12, family="timesformer")


@register_backbone("haltingvt_deit_s8",
                   summary="HaltingVT's DeiT-S Joint-ST backbone: 384-d, 12 blocks, 6 heads, 8x224, "
                           "tubelet 1, 200 classes (Mini-Kinetics); build with method=haltingvt")
def haltingvt_deit_s8() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=384, depth=12, num_heads=6, tubelet_size=1, num_frames=8,
                          num_classes=200)


# V-JEPA 2 (Assran et al., 2025; facebookresearch/vjepa2): frozen encoders with the attentive probes Meta
# trained on them, as transformers VJEPA2ForVideoClassification (transformers' convert_vjepa2_classifier_to_hf:
# the base encoder with frames_per_clip set, 3 probe self-attention layers = the official 4 probe blocks).
def _vjepa2(size: str, frames: int, img_size: int, num_classes: int) -> VideoViTConfig:
    dims = {"l": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
            "g": dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11)}[size]
    return VideoViTConfig(**dims, family="vjepa2", patch_size=16, tubelet_size=2, num_frames=frames,
                          img_size=img_size, num_classes=num_classes, norm_eps=1e-6, probe_layers=3)


@register_backbone("vjepa2_vitl_fpc16_256_ssv2",
                   summary="V-JEPA 2 ViT-L/16 + SSv2 attentive probe (hf:facebook/vjepa2-vitl-fpc16-256-ssv2): "
                           "16x256, tubelet 2, 3-D RoPE, 174 classes (0.4 B)")
def vjepa2_vitl_fpc16_256_ssv2() -> VideoViTConfig:
    return _vjepa2("l", 16, 256, 174)


@register_backbone("vjepa2_vitl_fpc32_256_diving48",
                   summary="V-JEPA 2 ViT-L/16 + Diving-48 attentive probe (hf:facebook/vjepa2-vitl-fpc32-256-"
                           "diving48): 32x256, tubelet 2, 3-D RoPE, 48 classes (0.4 B)")
def vjepa2_vitl_fpc32_256_diving48() -> VideoViTConfig:
    return _vjepa2("l", 32, 256, 48)


@register_backbone("vjepa2_vitg_fpc64_384_ssv2",
                   summary="V-JEPA 2 ViT-g/16 + SSv2 attentive probe (hf:facebook/vjepa2-vitg-fpc64-384-ssv2): "
                           "64x384, tubelet 2, 3-D RoPE, 174 classes (1 B)")
def vjepa2_vitg_fpc64_384_ssv2() -> VideoViTConfig:
    return _vjepa2("g", 64, 384, 174)


@register_backbone("vjepa2_vitg_fpc32_384_diving48",
                   summary="V-JEPA 2 ViT-g/16 + Diving-48 attentive probe (hf:facebook/vjepa2-vitg-fpc32-384-"
                           "diving48): 32x384, tubelet 2, 3-D RoPE, 48 classes (1 B)")
def vjepa2_vitg_fpc32_384_diving48() -> VideoViTConfig:
    return _vjepa2("g", 32, 384, 48)


# --- Video Swin (Liu et al., CVPR'22): hierarchical, shifted 3-D windows, patch merging, no CLS ---------

@dataclasses.dataclass
class VideoSwinConfig:
    """Architecture of a Video Swin Transformer (torchvision ``swin3d_*``; SwinTransformer/Video-Swin-Transformer).

    Four stages of shifted-window blocks; between stages a patch merging layer concatenates each 2x2
    spatial neighbourhood (channels x4), normalises it and projects it to twice the width (time is never
    merged). Relative position bias inside each window, no CLS token; the final LayerNorm is applied to
    every token, then the mean over tokens and the head.
    """

    embed_dim: int = 96  # channels of stage 1 (stage s has embed_dim * 2**s)
    depths: tp.Tuple[int, ...] = (2, 2, 6, 2)  # blocks per stage
    heads: tp.Tuple[int, ...] = (3, 6, 12, 24)  # attention heads per stage
    window_size: tp.Tuple[int, int, int] = (8, 7, 7)  # (T, H, W) tokens per window (clamped to a smaller grid)
    patch_size: tp.Tuple[int, int, int] = (2, 4, 4)  # (frames, pixels, pixels) per stage-1 token
    num_frames: int = 32  # input frames T
    img_size: int = 224  # input side, pixels
    num_classes: int = 400  # classifier outputs (0 = no head)
    in_chans: int = 3  # input channels
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * C
    norm_eps: float = 1e-5  # LayerNorm epsilon (torchvision and the official code: 1e-5)
    family: str = "videoswin"  # the only family of this config class

    def __post_init__(self):
        for name in ("depths", "heads", "window_size", "patch_size"):
            value = getattr(self, name)
            if isinstance(value, list):  # a suite's YAML list
                setattr(self, name, tuple(value))

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def depth(self) -> int:
        """Blocks over all stages."""
        return sum(self.depths)

    @property
    def num_heads(self) -> int:
        """Heads of the widest stage (what memory estimates need)."""
        return max(self.heads)

    @property
    def attention_span(self) -> int:
        """Keys a query attends to: one window (what memory estimates need instead of all tokens)."""
        t, h, w = self.window_size
        return t * h * w

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2 ** stage

    def stage_grid(self, stage: int) -> tp.Tuple[int, int, int]:
        """(T', H', W') token grid of ``stage`` (0-based): patch merging halves H and W (rounding up)."""
        t, h, w = self.grid
        for _ in range(stage):
            h, w = (h + 1) // 2, (w + 1) // 2
        return t, h, w

    def stage_window(self, stage: int) -> tp.Tuple[tp.Tuple[int, int, int], tp.Tuple[int, int, int]]:
        """(window, shift) of ``stage``'s shifted blocks: a window no larger than the grid, no shift
        along an axis the window covers (torchvision ``_get_window_and_shift_size``)."""
        grid = self.stage_grid(stage)
        window = tuple(min(w, g) for w, g in zip(self.window_size, grid))
        shift = tuple(0 if g <= w else w // 2 for w, g in zip(self.window_size, grid))
        return window, shift

    @property
    def grid(self) -> tp.Tuple[int, int, int]:
        """(T', H', W') stage-1 token grid (the input is padded up to a multiple of the patch)."""
        pt, ph, pw = self.patch_size
        return (-(-self.num_frames // pt), -(-self.img_size // ph), -(-self.img_size // pw))

    @property
    def num_tokens(self) -> int:
        """Stage-1 tokens."""
        t, h, w = self.grid
        return t * h * w

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout(self.family, 0, "relative_bias", "windowed", "thw", "mean", self.grid,
                           stages=self.num_stages)

    def check(self) -> tp.List[str]:
        problems = []
        if self.family != "videoswin":
            problems.append(f"family {self.family!r}: a VideoSwinConfig is always 'videoswin'")
        for name in ("embed_dim", "num_frames", "img_size", "in_chans"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name, length in (("window_size", 3), ("patch_size", 3)):
            value = getattr(self, name)
            if len(value) != length or any(v <= 0 for v in value):
                problems.append(f"{name} must be {length} positive ints, got {value}")
        if not self.depths or len(self.heads) != len(self.depths):
            problems.append(f"depths {self.depths} and heads {self.heads} must name the same stages")
        elif any(d <= 0 for d in self.depths) or any(h <= 0 for h in self.heads):
            problems.append(f"depths {self.depths} and heads {self.heads} must be positive")
        else:
            for s, h in enumerate(self.heads):
                if self.stage_dim(s) % h:
                    problems.append(f"stage {s + 1}: width {self.stage_dim(s)} is not divisible by {h} heads")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0, got {self.num_classes}")
        return problems


# torchvision's swin3d_t/s/b (K400 ports of the official checkpoints); the official SSv2 Swin-B uses 16x7x7 windows
@register_backbone("videoswin_t", summary="Video Swin-T (torchvision swin3d_t), 32x224, window 8x7x7, K400 (28 M)")
def videoswin_t() -> VideoSwinConfig:
    return VideoSwinConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24))


@register_backbone("videoswin_s", summary="Video Swin-S (torchvision swin3d_s), 32x224, window 8x7x7, K400 (50 M)")
def videoswin_s() -> VideoSwinConfig:
    return VideoSwinConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24))


@register_backbone("videoswin_b", summary="Video Swin-B (torchvision swin3d_b), 32x224, window 8x7x7, K400 (88 M)")
def videoswin_b() -> VideoSwinConfig:
    return VideoSwinConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32))


@register_backbone("videoswin_b_ssv2",
                   summary="Video Swin-B SSv2 (official swin_base_patch244_window1677_sthv2), 32x224, window "
                           "16x7x7, 174 classes (89 M)")
def videoswin_b_ssv2() -> VideoSwinConfig:
    return VideoSwinConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), window_size=(16, 7, 7),
                           num_classes=174)


@register_backbone("synthetic_videoswin_tiny",
                   summary="tests: Video Swin with 32-d, 2-1-2-1 blocks, window 4x2x2, 16x64, 12 classes")
def synthetic_videoswin_tiny() -> VideoSwinConfig:
    return VideoSwinConfig(embed_dim=32, depths=(2, 1, 2, 1), heads=(1, 2, 2, 4), window_size=(4, 2, 2),
                           num_frames=16, img_size=64, num_classes=12)


# Last, once register_backbone exists: registers every family, including those on HARNESS_FAMILIES_PATH, whose
# module may register its presets here too.
from harness.models import families  # noqa: E402
