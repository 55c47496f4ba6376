"""``build_model``: a backbone preset + a token-reduction method (+ weights) -> an eval-mode model."""
from __future__ import annotations

import os
import typing as tp


def build_model(backbone: str, *, method: str = "dense", method_args: tp.Optional[dict] = None,
                checkpoint: tp.Optional[str | os.PathLike] = None, **dims: tp.Any):
    """Build a video ViT with a token-reduction method plugged in.

    Args:
        backbone: a registered preset (``harness ls backbones``) or ``"video_vit"`` with explicit dims.
        method: a registered method name (``harness ls methods``).
        method_args: the method's knobs, e.g. ``{"r": 16}`` for ToMe.
        checkpoint: a fine-tuned checkpoint, loaded strictly: a file (official VideoMAE, DeepSpeed,
            mmaction2 or Hugging Face keys; ``.safetensors`` or a pickle), a Hugging Face model
            directory or ``"hf:ORG/NAME[@REVISION]"`` (``docs/checkpoints.md``). A directory or ``hf:``
            name also gives the dims (``config.json``; with a preset it must agree) and
            ``model.class_names`` (``id2label``).
        **dims: architecture overrides (``embed_dim, depth, num_heads, patch_size, tubelet_size,
            num_frames, img_size, num_classes``); ``None`` keeps the preset's value.

    Returns:
        ``harness.models.video_vit.VideoViT`` (``harness.models.video_swin.VideoSwin`` for a Video Swin
        preset; or the method's own network, e.g. HaltingVT) in eval
        mode, following ``harness/models/protocol.py``; ``model(clip)`` takes [B, 3, T, H, W].

    >>> model = build_model("videomae_vit_b16", num_classes=400, method="tome", method_args={"r": 16})
    """
    import methods
    from harness.models.compatibility import method_problems
    from harness.models.video_vit import VideoViT

    from harness.models.dims import resolve_backbone

    cfg = resolve_backbone(backbone, dims, checkpoint)
    spec = methods.get_method(method)
    params = spec.make_params(method_args)
    problems = method_problems(method, params, cfg)
    if problems:
        raise ValueError("; ".join(problems))
    if cfg.family == "videoswin":  # its own network; the method's Video Swin entry point (refused above if none)
        from harness.registry import load_object

        model = load_object(spec.video_swin)(cfg, params)
    elif spec.architecture is not None:
        from harness.registry import load_object

        model = load_object(spec.architecture)(cfg, params)
    else:
        reducer = spec.load_implementation()(params, depth=cfg.depth, num_heads=cfg.num_heads,
                                             embed_dim=cfg.embed_dim)
        model = VideoViT(cfg, reducer)
    model.method_name = method  # which registered method it runs (its fvcore ops: measure.flops.method_ops)
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)  # sets model.checkpoint_layout (and class_names from an HF config)
    return model.eval()


def build_from_config(backbone: tp.Mapping[str, tp.Any], method: tp.Mapping[str, tp.Any], *,
                      checkpoint: tp.Optional[str | os.PathLike] = None):
    """``build_model`` from a suite/cell's ``backbone`` dict (name + dims; its ``checkpoint`` is not loaded:
    which weights a cell evaluates is the caller's decision) and ``method`` dict (name + params)."""
    from harness.models.dims import backbone_dims

    return build_model(backbone["name"], method=method["name"], method_args=method.get("params"),
                       checkpoint=checkpoint, **backbone_dims(backbone))
