"""STTM: Spatial-temporal Token Merger (Feng, Xu, Ma, Zhang; ACM TOMM 20(4), 2024) — a RE-IMPLEMENTATION.

The paper is closed access and no code is public: only the abstract could be read. Everything below
the abstract's level of detail is our reconstruction (``/work/shared/specs/methods.md`` §6.2, choices
[R1]..[R8]); every such choice is a named field of ``STTMParams`` and ``docs/sttm.md`` lists what would
change once the paper is available. Results are labelled "STTM (re-implementation)".

Registration only (no torch); the pure tensor functions are in ``merge.py``, the model wiring in
``reducer.py``.
"""
import dataclasses
import math
import typing as tp

from methods.registry import register_method

MOTION_MODES = ("learned", "off")
META_SELECTIONS = ("dpc_knn",)


def default_layer(depth: int) -> int:
    """[R1] block after which STTM runs when ``layer`` is None: ``depth // 4`` (3 for 12 blocks)."""
    return depth // 4


def resolve_count(value: float, total: int) -> int:
    """A budget knob as a count: ``value < 1`` is a fraction of ``total`` (``int(total * value)``),
    ``value >= 1`` a count (not capped here: ``check_backbone`` reports counts above ``total``)."""
    return int(total * value) if value < 1 else int(value)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What one STTM setting does on one backbone grid (token counts are the same for every clip)."""

    layer: int  # STTM runs after this block
    frames: int  # T' temporal token slices
    tokens_per_frame: int  # N_f = H' W' tokens of one slice before STTM
    num_meta: int  # K: meta tokens = tokens of every slice after spatial merging
    temporal_r: int  # cross-frame merges per consecutive slice pair
    knn_k: int  # DPC-kNN neighbours actually used (capped at N_f)

    @property
    def tokens_in(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def tokens_after_spatial(self) -> int:
        return self.frames * self.num_meta

    @property
    def tokens_out(self) -> int:
        """Tokens after the module: T' K - (T' - 1) r."""
        return self.frames * self.num_meta - (self.frames - 1) * self.temporal_r


def budget(params: "STTMParams", cfg: tp.Any) -> Budget:
    """Resolve ``params`` on backbone ``cfg`` (a ``VideoViTConfig``): layer, K and r as counts."""
    frames, side_h, side_w = cfg.grid
    per_frame = side_h * side_w
    k = max(1, resolve_count(params.num_meta, per_frame))
    layer = default_layer(cfg.depth) if params.layer is None else int(params.layer)
    return Budget(layer, frames, per_frame, k, resolve_count(params.temporal_r, k),
                  min(int(params.knn_k), per_frame))


@register_method(
    "sttm", implementation="methods.sttm.reducer:STTMReducer", kind="merge", training_free=False,
    display_name="STTM (re-implementation)",
    summary="RE-IMPLEMENTATION (paper closed, no code): once, after block l, DPC-kNN meta tokens per "
            "frame, tokens merged into their most similar meta (softmax weights), then ToMe matching "
            "between consecutive frames; motion='learned' adds a zero-init motion embedding of the merged "
            "positions (needs fine-tuning); the default motion='off' is training-free",
    reference="Feng, Xu, Ma, Zhang, Efficient Video Transformers via Spatial-temporal Token Merging for "
              "Action Recognition, ACM TOMM 20(4) 2024, doi:10.1145/3633781 (no public code; "
              "reconstruction in docs/sttm.md)",
    # [R8] plain cross-entropy, the backbone's fine-tuning optimiser, a short schedule (our choice)
    train_recipe={"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05, "epochs": 5,
                  "warmup_epochs": 1.0, "schedule": "cosine", "label_smoothing": 0.1},
    examples=({}, {"num_meta": 0.25, "temporal_r": 0.5, "motion": "learned", "layer": 0}),
    # DPC-kNN distances and meta assignment; the patch membership of merged tokens (rope3d positions)
    uncounted_ops=("aten::sqrt", "aten::min", "aten::argmax", "aten::expand_as"),
    supports=("rope3d", "attentive_pool"),  # V-JEPA 2: merged tokens rotate at their patches' mean position
    refuses={"cls_token": "the reconstruction (docs/sttm.md) defines its meta tokens over patch tokens only",
             "divided_attention": "its merging between consecutive frames changes the per-frame counts"},
)
@dataclasses.dataclass
class STTMParams:
    """STTM's knobs. Every field is a reconstruction choice of methods.md §6.2 (tag in brackets)."""

    # [R1] STTM runs once, after block `layer` (0-based); None = depth // 4 (3 for ViT-S/B, 1 for tiny)
    layer: tp.Optional[int] = None
    # [R2/R4] K meta tokens PER FRAME (= tokens per frame after spatial merging; the budget knob):
    # < 1 a fraction of the tokens per frame (int(N_f * K), at least 1), >= 1 a count (<= N_f)
    num_meta: float = 0.5
    # [R5] cross-frame merges per consecutive frame pair (ToMe bipartite matching of frame t into
    # frame t+1, chained over t): < 1 a fraction of K (int(K * r)), >= 1 a count (<= K)
    temporal_r: float = 0.25
    tau: float = 0.1  # [R3] temperature of the token-meta soft weights softmax_k(cos / tau)
    knn_k: int = 5  # [R2] neighbours (the token itself included) of the DPC-kNN density, capped at N_f
    meta_selection: str = "dpc_knn"  # [R2] meta tokens = density peaks (rho * delta) of each frame
    # [R6] "learned": e_g = W_m [P_g, dc_g] + b_m added to every merged token (W_m zero-initialised,
    # needs fine-tuning to do anything; the paper's full module); "off" (default): no motion
    # embedding and no parameters, so a dense checkpoint loads strictly (training-free, appearance only)
    motion: str = "off"
    prop_attn: bool = True  # [R7] later blocks add log(size) to the attention logits (ToMe)

    def check(self) -> tp.List[str]:
        problems = []
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)
                                       or self.layer < 0):
            problems.append(f"layer must be None or an int >= 0, got {self.layer!r}")
        for name, zero_ok in (("num_meta", False), ("temporal_r", True)):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or v < 0 or (v == 0 and not zero_ok)):
                problems.append(f"{name} must be a number {'>= 0' if zero_ok else '> 0'} "
                                f"(< 1: fraction, >= 1: count), got {v!r}")
            elif v >= 1 and v != int(v):
                problems.append(f"{name} >= 1 is a token count and must be whole, got {v!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not (
                math.isfinite(self.tau) and self.tau > 0):
            problems.append(f"tau must be a finite number > 0, got {self.tau!r}")
        if isinstance(self.knn_k, bool) or not isinstance(self.knn_k, int) or self.knn_k < 1:
            problems.append(f"knn_k must be an int >= 1, got {self.knn_k!r}")
        if self.meta_selection not in META_SELECTIONS:
            problems.append(f"meta_selection must be one of {META_SELECTIONS}, got {self.meta_selection!r}")
        if self.motion not in MOTION_MODES:
            problems.append(f"motion must be one of {MOTION_MODES}, got {self.motion!r}")
        if not isinstance(self.prop_attn, bool):
            problems.append(f"prop_attn must be true or false, got {self.prop_attn!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        """Problems of running this setting on backbone ``cfg`` (a ``VideoViTConfig``)."""
        if self.check():
            return []
        b = budget(self, cfg)
        problems = []
        if b.layer >= cfg.depth:
            problems.append(f"layer={b.layer} is out of range: the backbone has {cfg.depth} blocks, "
                            f"so STTM can follow blocks 0..{cfg.depth - 1}")
        if b.num_meta > b.tokens_per_frame:
            problems.append(f"num_meta={self.num_meta!r} asks for {b.num_meta} meta tokens per frame but a "
                            f"frame has {b.tokens_per_frame} tokens (use <= {b.tokens_per_frame}, or a "
                            "fraction < 1)")
        elif b.temporal_r > b.num_meta:
            problems.append(f"temporal_r={self.temporal_r!r} merges {b.temporal_r} tokens per frame pair "
                            f"but a frame has only K={b.num_meta} tokens after spatial merging "
                            f"(use <= {b.num_meta}, or a fraction < 1 of K)")
        return problems
