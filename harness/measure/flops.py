"""GMACs per view from the token counts a forward really used, in fvcore's convention.

Convention (stated once, used everywhere): one multiply-add = one MAC; the papers' "GFLOPs" are
GMACs (VideoMAE ViT-B 16x224 = 180 G). Counted as fvcore counts them: convolution, linear layers,
both attention matmuls (q k^T and A v, which fvcore misses when they run fused), LayerNorm at 5 per
element, the head, and each method's own matmuls (``TokenReducer.overhead_macs``). Softmax, GELU,
adds, gather/scatter and sorting are not counted. GFLOPs = 2 x GMACs.
"""
from __future__ import annotations

import dataclasses
import typing as tp

NORM_MACS_PER_ELEMENT = 5  # fvcore's estimate for an affine LayerNorm

# Ops fvcore does not count that any forward may run: elementwise, data movement, the backbones' own
# (divided attention, rotary tables, Video Swin windows) and the index/sort work common to token reduction
# (its time is measured, its MACs are negligible). An op only one method runs is declared by that method:
# ``register_method(uncounted_ops=..., fvcore_handles=...)`` (``method_ops``).
IGNORED_OPS = frozenset({
    "aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::div_", "aten::sub",
    "aten::softmax", "aten::gelu", "aten::gelu_", "aten::mean", "aten::sum", "aten::log", "aten::norm",
    "aten::linalg_vector_norm", "aten::gather", "aten::scatter_reduce", "aten::scatter", "aten::argsort",
    "aten::sort", "aten::max", "aten::topk", "aten::index", "aten::index_select", "aten::ones_like", "aten::zeros_like",
    "aten::expand", "aten::unbind", "aten::cat", "aten::flatten", "aten::transpose", "aten::permute",
    "aten::reshape", "aten::view", "aten::slice", "aten::select", "aten::unsqueeze", "aten::eye",
    "aten::clone", "aten::contiguous", "aten::copy_", "aten::fill_", "aten::to", "aten::type_as",
    "aten::detach", "aten::repeat", "aten::where", "aten::dropout", "aten::exp", "aten::neg",
    "aten::repeat_interleave", "aten::pad",  # divided attention: the class token copied into every frame, its bias padded
    "aten::tanh", "aten::tanh_",  # ViViT's gelu_fast (elementwise; in place without autograd)
    "aten::sin", "aten::cos", "aten::pow", "aten::reciprocal", "aten::unflatten", "aten::stack",  # V-JEPA 2 rotary tables
    "aten::rsub", "aten::ne", "aten::roll", "aten::masked_fill",  # Video Swin: window padding, shift masks,
    "aten::full", "aten::scatter_", "aten::unfold",  # removed-key masks, the 2x2 children a merged token keeps
})


def method_ops(method: tp.Optional[str]) -> tp.Tuple[tp.FrozenSet[str], tp.Dict[str, tp.Callable]]:
    """The free ops ``method`` declared (``uncounted_ops``) and its fvcore handles, loaded (``fvcore_handles``);
    none for ``None`` (a model not built by ``build_model``)."""
    if method is None:
        return frozenset(), {}
    import methods
    from harness.registry import load_object

    spec = methods.get_method(method)
    return spec.uncounted_ops, {op: load_object(target) for op, target in spec.fvcore_handles.items()}


@dataclasses.dataclass
class MacsCount:
    patch_embed: int
    linear: int  # qkv, proj, MLP
    attention: int  # q k^T and A v
    norm: int  # LayerNorms (5 per element)
    overhead: int  # the reduction method's own matmuls (rope3d: also the merged tokens' positions)
    head: int  # fc_norm + classifier (attentive pooling: final norm + probe + classifier)
    per_block: tp.List[int]  # everything counted inside each block

    @property
    def total(self) -> int:
        return self.patch_embed + self.linear + self.attention + self.norm + self.overhead + self.head

    def as_record(self) -> dict:
        return {"gmacs_per_view": self.total / 1e9, "gflops_per_view": 2 * self.total / 1e9,
                "gmacs_breakdown": {k: getattr(self, k) / 1e9 for k in
                                    ("patch_embed", "linear", "attention", "norm", "overhead", "head")},
                "gmacs_per_block": [m / 1e9 for m in self.per_block],
                "flops_convention": "1 MAC = 1 multiply-add (fvcore); GFLOPs = 2 x GMACs; "
                                    "fused attention and LayerNorm (5/element) and the head included"}


def count_macs(cfg, tokens_in: tp.Sequence[int], tokens_mlp: tp.Sequence[int],
               overhead: tp.Callable[[int, int], int] = lambda layer, n: 0,
               tokens_out: tp.Optional[int] = None) -> MacsCount:
    """MACs of one view, from the tokens entering each block's attention and MLP (class tokens included)
    and, for the attentive probe, the tokens leaving the last block (``tokens_out``; default: those of
    its MLP).

    Joint attention: every token attends to every token. Divided attention (TimeSformer): the patch
    tokens attend over the T' tokens of their patch position (plus ``temporal_fc``), then each frame's
    patch tokens and a copy of the class token attend to each other; the method's overhead is per frame
    (it is handed each frame's patch tokens). Rotary positions (V-JEPA 2): a block entered by fewer
    tokens than the input's computes each token's position as ``source @ grid`` (n x N0 x 3 MACs, in
    ``overhead``); the rotations themselves are elementwise."""
    layout = cfg.layout
    c = cfg.embed_dim
    hidden = int(c * cfg.mlp_ratio)
    cls = layout.cls_tokens
    frames = layout.grid[0]
    patch = cfg.num_tokens * c * cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2
    linear = attention = norm = extra = 0
    per_block = []
    for layer, (n, m) in enumerate(zip(tokens_in, tokens_mlp)):
        if layout.attention == "divided":
            per_frame = (n - cls) // frames  # patch tokens per frame
            spatial = frames * (per_frame + cls)  # each frame with its copy of the class token
            temporal = n - cls
            block_linear = (temporal * 3 * c * c + 2 * temporal * c * c + spatial * 4 * c * c
                            + 2 * m * c * hidden)
            block_attention = 2 * per_frame * frames * frames * c + 2 * frames * (per_frame + cls) ** 2 * c
            block_norm = NORM_MACS_PER_ELEMENT * c * (temporal + spatial + m)
            block_extra = frames * overhead(layer, per_frame)
        else:
            block_linear = n * c * 3 * c + n * c * c + 2 * m * c * hidden
            block_attention = 2 * n * n * c
            block_norm = NORM_MACS_PER_ELEMENT * c * (n + m)
            block_extra = overhead(layer, n)
            if layout.position == "rope3d" and n != cfg.num_tokens:
                block_extra += n * cfg.num_tokens * 3  # positions of the remaining tokens
        linear, attention, norm, extra = (linear + block_linear, attention + block_attention,
                                          norm + block_norm, extra + block_extra)
        per_block.append(block_linear + block_attention + block_norm + block_extra)
    # the mean-pooled families norm the pooled vector; the others norm every final token (as their
    # libraries do) and classify the class token
    normed = 1 if layout.pooling == "mean" else (tokens_mlp[-1] if tokens_mlp else cls + cfg.num_tokens)
    if layout.pooling == "attentive":
        normed = tokens_out if tokens_out is not None else normed
    head = NORM_MACS_PER_ELEMENT * c * normed + c * cfg.num_classes
    if layout.pooling == "attentive":
        head += probe_macs(cfg, normed)
    return MacsCount(patch, linear, attention, norm, extra, head, per_block)


def probe_macs(cfg, n: int) -> int:
    """V-JEPA 2's attentive probe over ``n`` tokens: ``probe_layers`` self-attention layers (qkv + out
    projections, q k^T and A v, MLP of ratio 4, two LayerNorms), then one query cross-attending (q of
    the query, k and v of the normed tokens, no output projection) and its MLP."""
    c = cfg.embed_dim
    hidden = int(c * cfg.probe_mlp_ratio)
    self_layer = 4 * n * c * c + 2 * n * n * c + 2 * n * c * hidden
    cross = c * c + 2 * n * c * c + 2 * n * c + 2 * c * hidden
    return cfg.probe_layers * self_layer + cross + probe_norm_macs(cfg, n)


def probe_norm_macs(cfg, n: int) -> int:
    """The LayerNorms of ``probe_macs``: two per self-attention layer over the n tokens, the cross-attention's
    over the n keys and its MLP's over the query."""
    return NORM_MACS_PER_ELEMENT * cfg.embed_dim * (2 * n * cfg.probe_layers + n + 1)


def model_macs(model) -> MacsCount:
    """MACs of one view that ``model``'s last forward executed (``model.view_macs()``)."""
    return model.view_macs()


def fvcore_macs(model, clip, method: tp.Optional[str] = None) -> tp.Tuple[int, tp.Dict[str, int]]:
    """Count ``model(clip)`` with fvcore (jit trace) plus a handle for fused attention and the method's
    own handles (``method``, default the ``method_name`` that ``build_model`` gave the model).

    Returns the total MACs and the ops fvcore skipped that are neither in ``IGNORED_OPS`` nor declared
    free by the method.
    """
    import torch
    from fvcore.nn import FlopCountAnalysis

    free, handles = method_ops(method if method is not None else getattr(model, "method_name", None))
    analysis = FlopCountAnalysis(model, clip)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
    for op, handle in handles.items():
        analysis.set_op_handle(op, handle)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.inference_mode():
        total = int(analysis.total())
    unexpected = {op: n for op, n in analysis.unsupported_ops().items() if op not in IGNORED_OPS | free}
    return total, unexpected


def _sdpa_macs(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, n, d = q
    s = k[-2]
    b = 1
    for dim in batch:
        b *= dim
    return 2 * b * n * s * d  # q k^T and A v
