"""RLT: Run-Length Tokenization (Choudhury et al., "Don't Look Twice: Faster Video Transformers with
Run-Length Tokenization", NeurIPS 2024; rccchoudhury/rlt @ 69ec8b4).

Before the backbone, a patch whose mean absolute pixel difference to the same patch one tubelet
earlier is not above ``threshold`` is dropped (the first tubelet is always kept); only the kept
patches are embedded and run through the blocks. Token counts differ per clip. See docs/rlt.md.

Registration only (no torch); the tensor functions are in ``tokens.py``, the model in ``model.py``.
"""
import dataclasses
import math
import typing as tp

from methods.registry import register_method

MODES = ("padded", "varlen")
IMAGENET_STD = (0.229, 0.224, 0.225)  # the official code compares ImageNet-normalised pixels


@register_method(
    "rlt", implementation="methods.rlt.model:RLTReducer", architecture="methods.rlt.model:build_rlt",
    kind="prune", adaptive_token_count=True, inference_only=("mode",), display_name="RLT",
    summary="drops every patch whose mean |pixel difference| to the same patch one tubelet earlier is "
            "<= threshold (first tubelet kept) before the patch embedding; optional learned run-length "
            "embedding (needs fine-tuning); padded or varlen execution",
    reference="Choudhury et al., Don't Look Twice: Faster Video Transformers with Run-Length "
              "Tokenization, NeurIPS 2024; rccchoudhury/rlt",
    token_map="methods.rlt.viz:token_map",
    examples=({"threshold": 0.1}, {"threshold": 1.13, "mode": "padded"}),  # 1.13: ~half of a noise clip's patches
    # mean |pixel difference| per patch (elementwise, before the model); run lengths (index bookkeeping)
    uncounted_ops=("aten::abs", "aten::avg_pool3d", "aten::flip", "aten::cummin"),
    supports=(),
    refuses={"cls_token": "methods/rlt/model.py builds VideoMAE's embedding (no class token or learned positions)",
             "divided_attention": "it removes a different set of repeated patches in every frame",
             "rope3d": "methods/rlt/model.py builds VideoMAE's embedding (no rotary positions)"},
)
@dataclasses.dataclass
class RLTParams:
    threshold: float = 0.1  # official drop_param (configs/experiment/train_vit_mae.yaml), on ImageNet-normalised pixels
    mode: str = "varlen"  # "varlen": kept tokens of all clips concatenated, attention per clip (the official
    #                       execution, xformers BlockDiagonalMask); "padded": [B, max kept, C], padding masked
    length_encoding: bool = False  # add a learned embedding of each token's run length (fine-tune it)
    input_std: tp.List[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))
    #   per-channel std (on [0,1] pixels) the clips were normalised with; differences are rescaled to the
    #   official ImageNet scale (no-op for the harness's datasets, which all default to ImageNet mean/std)

    def check(self) -> tp.List[str]:
        problems = []
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            problems.append(f"threshold must be a finite number >= 0, got {t!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.length_encoding, bool):
            problems.append(f"length_encoding must be true or false, got {self.length_encoding!r}")
        std = self.input_std
        if (not isinstance(std, (list, tuple)) or len(std) != 3
                or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 for s in std)):
            problems.append(f"input_std must be 3 positive numbers (per-channel std on [0,1] pixels), got {std!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        if self.check():
            return []
        if cfg.in_chans != len(self.input_std):
            return [f"input_std has {len(self.input_std)} channels but the backbone takes {cfg.in_chans}"]
        if cfg.num_frames < 2 * cfg.tubelet_size:
            return [f"RLT compares consecutive tubelets: needs num_frames >= {2 * cfg.tubelet_size}, "
                    f"got {cfg.num_frames}"]
        return []
