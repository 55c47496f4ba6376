"""Benchmark harness for token reduction in video transformers.

    import harness
    model = harness.build_model("videomae_vit_b16", num_classes=400, checkpoint="vit_b_k400.pth",
                                method="tome", method_args={"r": 16})
    logits = model(clip)  # clip: float [B, 3, T, H, W], normalised
"""
from harness.build import build_model as build_model

__version__ = "0.1.0"
__all__ = ["build_model"]
