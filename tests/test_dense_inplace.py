"""Without autograd the blocks write their activation and MLP residual into buffers they own; the numbers
stay the same bit for bit and training still backpropagates through the ordinary ops."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import harness
from harness.models.video_vit import FastGELU

FAMILIES = {"videomae": {}, "vivit": {"act": "gelu_fast"}, "timesformer": {"tubelet_size": 1},
            "vjepa2": {"probe_layers": 1}}


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _model(family="videomae", method="dense", method_args=None):
    torch.manual_seed(0)
    model = harness.build_model("video_vit", method=method, method_args=method_args, family=family, embed_dim=32,
                                depth=4 if method == "haltingvt" else 2, num_heads=4, patch_size=8, num_frames=4, img_size=32, num_classes=5,
                                **{"tubelet_size": 2, **FAMILIES[family]})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.endswith("token"):
                p.normal_(std=0.1)
    return model.eval()


@pytest.mark.parametrize("family,method,args", [(f, "dense", None) for f in FAMILIES] + [
    ("videomae", "tome", {"r": 4}), ("videomae", "haltingvt", {"halt_center": -1.0}),
    ("videomae", "haltingvt", {"keep_rate": 0.5, "halt_center": -1.0, "mode": "varlen"})])
def test_inference_forward_equals_the_autograd_forward_bit_for_bit(family, method, args):
    model = _model(family, method, args)
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.enable_grad():
        reference = model(clip).detach()
    with torch.inference_mode():
        fast = model(clip)
    with torch.no_grad():
        no_grad = model(clip)
    assert torch.equal(reference, fast) and torch.equal(reference, no_grad)


def test_fast_gelu_in_place_is_the_module_bit_for_bit():
    x = torch.randn(10007) * 4
    y = x.clone()
    out = FastGELU.inplace(y)
    assert out.data_ptr() == y.data_ptr() and torch.equal(out, FastGELU()(x))


@pytest.mark.parametrize("method,args,blocks", [("dense", None, 2), ("haltingvt", {"halt_center": 5.0}, 4)])
def test_activation_and_mlp_residual_run_in_place_only_without_autograd(method, args, blocks):
    """Dense and HaltingVT's own network (Glimpser and halting blocks; halt_center 5: no token halts, so every
    block runs): the same in-place path, so that a speedup over dense is not an allocation difference."""
    model = _model(method=method, method_args=args)
    clip = torch.randn(1, 3, 4, 32, 32)
    with _Ops() as fast, torch.inference_mode():
        model(clip)
    assert fast.names.count("gelu_") == blocks and "gelu" not in fast.names
    with _Ops() as ordinary:
        model(clip)
    assert ordinary.names.count("gelu") == blocks and "gelu_" not in ordinary.names
    assert fast.names.count("add_") - ordinary.names.count("add_") == blocks  # one MLP residual per block
    assert method != "dense" or "add_" not in ordinary.names


def test_training_still_backpropagates_through_the_block():
    model = _model().train()
    clip = torch.randn(2, 3, 4, 32, 32)
    loss, _ = model.training_loss({"clips": clip, "labels": torch.tensor([0, 3])})
    loss.backward()
    fc1 = model.blocks[0].mlp.fc1.weight.grad
    assert fc1 is not None and torch.isfinite(fc1).all() and fc1.abs().sum() > 0


def test_bf16_autocast_forward_keeps_the_residual_dtype_of_the_ordinary_forward():
    model = _model()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.enable_grad():
            reference = model(clip)
        with torch.inference_mode():
            fast = model(clip)
    assert fast.dtype == reference.dtype and torch.equal(reference.detach(), fast)


@pytest.mark.parametrize("method,args", [("dense", None), ("sta_swin", {"r": 16})])
def test_video_swin_runs_the_same_in_place_path_with_the_same_numbers(method, args):
    """Video Swin (dense and STA on it): inference == the autograd forward bit for bit, GELU and the MLP
    residual in place only without autograd."""
    torch.manual_seed(0)
    model = harness.build_model("synthetic_videoswin_tiny", method=method, method_args=args).eval()
    cfg = model.cfg
    clip = torch.randn(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    with _Ops() as ordinary, torch.enable_grad():
        reference = model(clip).detach()
    with _Ops() as fast, torch.inference_mode():
        logits = model(clip)
    assert torch.equal(reference, logits)
    blocks = sum(cfg.depths)
    assert fast.names.count("gelu_") == blocks and ordinary.names.count("gelu") == blocks
    assert fast.names.count("add_") - ordinary.names.count("add_") == blocks
