"""Input downsampling: the "just do less work" baseline (training-free, input level).

Before the patch embedding the clip is resampled to ``frames`` frames (segment centres of the sampled
clip) and/or ``size`` x ``size`` pixels (antialiased bilinear), and the positional table is resampled
to the smaller token grid as VideoMAE V2 does for a fine-tuned model run at another input size
(bicubic over the spatial grid, linear over time). See docs/downsample.md.

Registration only (no torch); the tensor functions are in ``resample.py``, the model in ``model.py``.
"""
import dataclasses
import typing as tp

from methods.registry import register_method

POS_EMBED_MODES = ("interpolate", "regenerate")


@register_method(
    "downsample", implementation="harness.models.reduction:TokenReducer",
    architecture="methods.downsample.model:build_downsampled", kind="resample",
    summary="resample the clip before the patch embedding to fewer frames (segment centres) and/or a "
            "smaller size (antialiased bilinear); positional table resampled (bicubic space, linear time)",
    reference="input-downsampling baseline (VTC-Bench 2025; positional resampling as "
              "OpenGVLab/VideoMAEv2 run_class_finetuning.py)",
    token_map="methods.downsample.viz:token_map",
    video_swin="methods.downsample.swin:build",
    examples=({"frames": 8}, {"frames": 12, "size": 48}),
    uncounted_ops=("aten::_upsample_bilinear2d_aa",),  # resizing the input clip (input preparation, like decoding)
    supports=("cls_token", "divided_attention", "rope3d", "attentive_pool", "windowed_attention", "hierarchical"),
    #          Video Swin: the same weights on a resampled clip (no positional table)
)
@dataclasses.dataclass
class DownsampleParams:
    frames: tp.Optional[int] = None  # frames fed to the backbone (None: all); a multiple of the tubelet size
    size: tp.Optional[int] = None  # input side in pixels (None: unchanged); a multiple of the patch size
    pos_embed: str = "interpolate"  # "interpolate" the backbone's table to the new grid, or "regenerate"
    #                                 the 1-D sinusoid for the new token count (what VideoMAE v1 builds);
    #                                 rope3d: each token's centre on the backbone's grid, or the new grid's
    #                                 own integer positions

    def check(self) -> tp.List[str]:
        problems = []
        for name in ("frames", "size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                problems.append(f"{name} must be a positive int or null, got {value!r}")
        if self.pos_embed not in POS_EMBED_MODES:
            problems.append(f"pos_embed must be one of {POS_EMBED_MODES}, got {self.pos_embed!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        """Problems of these settings on backbone ``cfg`` (a ``VideoViTConfig`` or ``VideoSwinConfig``)."""
        if self.check():
            return []
        problems = []
        if getattr(cfg, "family", None) == "videoswin":  # a frame step is the patch depth, a pixel step its side
            tubelet, patch = cfg.patch_size[0], cfg.patch_size[1]
            if self.pos_embed != "interpolate":
                problems.append("pos_embed does not apply to Video Swin (relative position bias); leave it unset")
        else:
            tubelet, patch = cfg.tubelet_size, cfg.patch_size
        if self.frames is not None:
            if self.frames > cfg.num_frames:
                problems.append(f"frames {self.frames} > the clip's {cfg.num_frames} frames (it only downsamples)")
            if self.frames % tubelet:
                problems.append(f"frames {self.frames} is not a multiple of tubelet_size {tubelet}")
        if self.size is not None:
            if self.size > cfg.img_size:
                problems.append(f"size {self.size} > the clip's {cfg.img_size} px (it only downsamples)")
            if self.size % patch:
                lower = max(patch, self.size - self.size % patch)
                problems.append(f"size {self.size} is not a multiple of patch_size {patch} "
                                f"(did you mean {lower}?)")
        return problems
