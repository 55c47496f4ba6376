"""HaltingVT: Glimpser pruning + per-token adaptive halting (Wu et al., arXiv 2401.04975;
dun-research/HaltingVT @ 4830e2a).

Registration only (no torch). HaltingVT brings its own network (``model.py``: two TimeSformer
divided space-time blocks, the second one pruning by CLS attention, then joint space-time blocks
with A-ViT style halting) and its own training batch (``motion.py``: static clips for the Motion
Loss). See docs/haltingvt.md.
"""
import dataclasses
import math
import typing as tp

from methods.registry import register_method

GLIMPSER_BLOCKS = 2  # divided space-time blocks before the halting blocks (official ``divid_depth``)
MODES = ("masked", "packed", "varlen")
HALTED_KEYS = ("zeros", "drop")

# The official fine-tuning recipe (configs/minik/*.py; the training code itself is not released).
OFFICIAL_RECIPE = {
    "init": "deit_small_patch16_224",  # ImageNet DeiT-S, spatial attention copied into temporal_attn
    "optimizer": "adam",
    "lr": 1e-5,
    "weight_decay": 1e-5,
    "no_decay": ["cls_token", "pos_embed", "time_embed"],  # decay_mult 0 (paramwise_cfg)
    "clip_grad": 40.0,  # max L2 norm of all gradients
    "warmup_epochs": 5,  # LinearLR x0.1 -> x1, stepped per epoch
    "warmup_start_factor": 0.1,
    "schedule": "cosine",  # CosineAnnealingLR from epoch 5, stepped per epoch, eta_min 0
    "cosine_t_max_epochs": 20,  # official T_max = total epochs although it starts at epoch 5
    "epochs": 20,  # Mini-Kinetics (ActivityNet: 50)
    "batch_size": 16,  # real clips per GPU (x2 with the static clips), 8 GPUs
    "normalise_mean_std": [127.5, 127.5],  # inputs scaled to [-1, 1]
}


@register_method(
    "haltingvt", implementation="methods.haltingvt.model:HaltingVTModel",
    architecture="methods.haltingvt.model:build_haltingvt", kind="halt", training_free=False,
    needs_attention_probs=True, adaptive_token_count=True,
    train_batch="methods.haltingvt.motion:add_static_clips", train_recipe=OFFICIAL_RECIPE,
    inference_only=("mode", "halted_keys"), display_name="HaltingVT",
    summary="Glimpser CLS-attention top-k per frame in block 1, then per-token ACT halting "
            "(channel-0 score) in the joint blocks; trained with ponder + motion losses",
    reference="Wu et al., HaltingVT: Adaptive Token Halting Transformer for Efficient Video "
              "Recognition, arXiv 2401.04975 (2024); dun-research/HaltingVT",
    token_map="methods.haltingvt.viz:token_map",
    examples=({"halt_center": -1.0}, {"halt_center": -1.0, "mode": "packed"},
              {"keep_rate": 0.25, "halt_center": -1.0, "mode": "varlen"}),
    uncounted_ops=("aten::sigmoid", "aten::lt", "aten::index_copy"),  # halting scores, ACT, packing
    supports=(),
    refuses={f: "HaltingVT brings its own network (Glimpser + joint halting blocks on a DeiT-S ViT), not a "
                "reduction of this family's model" for f in ("cls_token", "divided_attention", "rope3d")},
)
@dataclasses.dataclass
class HaltingVTParams:
    keep_rate: float = 0.5  # Glimpser keep rate rho of block 1 (block 0 keeps all); configs: 0.3/0.5/0.7
    halt_scale: float = 10.0  # gamma: h = sigmoid(gamma * x[:, :, 0] - beta)
    halt_center: float = 10.0  # beta ("Beta" in the config names: 5, 10 or 20)
    eps: float = 0.01  # a token halts once its cumulative score exceeds 1 - eps
    mode: str = "masked"  # "masked": official numerics, no saving; "packed": halted tokens removed, padded
    #                       batch; "varlen": halted tokens removed, each clip runs its own count (no padding)
    halted_keys: str = "zeros"  # packed/varlen: "zeros" = attend to the removed halted tokens as the official
    #                             batch's zero vectors do (one shared key weighted by their count: masked's numbers);
    #                             "drop" = halted tokens leave attention too (not the numbers the model was trained on)
    ponder_weight: float = 5e-4  # official ponder_token_scale (mean rho over batch and tokens)
    motion_weight: float = 1.0  # the official code applies the motion CE unscaled (motion_loss_beta
    #                             = 0.001 in the configs only switches it on)
    drop_path: float = 0.1  # stochastic depth, linear over all blocks (training only)

    def check(self) -> tp.List[str]:
        problems = []
        if not _is_number(self.keep_rate) or not 0.0 < self.keep_rate <= 1.0:
            problems.append(f"keep_rate must be in (0, 1], got {self.keep_rate!r}")
        for name in ("halt_scale", "halt_center"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value!r}")
            elif name == "halt_scale" and value <= 0:  # h = sigmoid(gamma * x0 - beta) would ignore / invert x0
                problems.append(f"halt_scale (gamma) must be > 0, got {value!r}")
        if not _is_number(self.eps) or not 0.0 <= self.eps < 1.0:
            problems.append(f"eps must be in [0, 1), got {self.eps!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.halted_keys not in HALTED_KEYS:
            problems.append(f"halted_keys must be one of {HALTED_KEYS}, got {self.halted_keys!r}")
        for name in ("ponder_weight", "motion_weight"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                problems.append(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not _is_number(self.drop_path) or not 0.0 <= self.drop_path < 1.0:
            problems.append(f"drop_path must be in [0, 1), got {self.drop_path!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        """Problems of building HaltingVT with the dims of ``cfg`` (a ``VideoViTConfig``)."""
        problems = []
        if cfg.depth < GLIMPSER_BLOCKS + 1:
            problems.append(f"HaltingVT needs depth >= {GLIMPSER_BLOCKS + 1} ({GLIMPSER_BLOCKS} Glimpser "
                            f"blocks + at least one halting block), got {cfg.depth}")
        if cfg.num_classes <= 0:
            problems.append(f"HaltingVT needs a classifier (num_classes > 0), got {cfg.num_classes}")
        if not self.check():
            per_frame = (cfg.img_size // cfg.patch_size) ** 2
            if glimpser_keep(per_frame, self.keep_rate) < 1:
                problems.append(f"keep_rate {self.keep_rate} keeps no token of {per_frame} per frame")
        return problems


def glimpser_keep(tokens_per_frame: int, keep_rate: float) -> int:
    """Tokens per frame the Glimpser keeps: ``ceil(rho * S)`` as the official code, all if rho = 1."""
    if keep_rate >= 1.0:
        return tokens_per_frame
    return math.ceil(keep_rate * tokens_per_frame)


def _is_number(value: tp.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
