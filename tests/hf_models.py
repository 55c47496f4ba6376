"""Tiny transformers reference models, shared by the tests that compare our backbones with Hugging Face's.

Each test file keeps its own config (sizes, labels); what they share is here: every parameter made non-trivial
(zero biases would hide key mix-ups), the input layout swap, and a logits-only wrapper for fvcore.
"""
from __future__ import annotations

import torch


def randomized(model: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    """``model`` in eval mode with every parameter drawn again (normal, ``scale``) from torch's current seed."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return model.eval()


def hf_logits(model, clip: torch.Tensor, key: str = "pixel_values") -> torch.Tensor:
    """transformers' logits for our clip layout ([B,C,T,H,W] -> HF's [B,T,C,H,W])."""
    with torch.no_grad():
        return model(**{key: clip.transpose(1, 2)}).logits


class Logits(torch.nn.Module):
    """A transformers classifier as a module returning the logits tensor (what fvcore traces); input in HF's layout."""

    def __init__(self, model, key: str = "pixel_values"):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(**{self.key: x}).logits


def saved(model, tmp_path_factory, name: str) -> str:
    """``model.save_pretrained`` into a fresh temporary folder; returns its path."""
    folder = tmp_path_factory.mktemp("hf") / name
    model.save_pretrained(folder)
    return str(folder)


def assert_same_logits(folder: str, model, clip: torch.Tensor, key: str = "pixel_values", fp32: float = 1e-5,
                       fp64: float = 1e-10, **build) -> None:
    """Our model of the saved ``folder`` gives transformers' logits: within ``fp32``, and within ``fp64`` in double
    precision (``model`` is left in float32)."""
    import harness

    ours = harness.build_model("video_vit", checkpoint=folder, **build)
    with torch.no_grad():
        assert (ours(clip) - hf_logits(model, clip, key)).abs().max().item() <= fp32
    if fp64 is None:
        return
    ours64 = ours.double()
    with torch.no_grad():
        diff = (ours64(clip.double()) - hf_logits(model.double(), clip.double(), key)).abs().max().item()
    model.float()
    assert diff <= fp64
