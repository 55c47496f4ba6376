"""The backbone's attention paths and hook contract."""
import torch

from harness.models.video_vit import Attention


def test_explicit_and_fused_attention_agree_with_and_without_bias():
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 10, 32)
    bias = torch.randn(2, 1, 1, 10)
    with torch.inference_mode():
        for b in (None, bias):
            fused = attn(x, bias=b)
            explicit = attn(x, bias=b, needs=frozenset({"probs", "keys"}))
            assert fused.probs is None and fused.keys is None
            assert torch.allclose(fused.out, explicit.out, atol=1e-5)
        assert torch.allclose(explicit.probs.sum(-1), torch.ones(2, 4, 10))


def test_probs_are_taken_before_the_bias():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    with torch.inference_mode():
        plain = attn(x, needs=frozenset({"probs"}))
        biased = attn(x, bias=torch.randn(1, 1, 1, 6) * 3, needs=frozenset({"probs"}))
    assert torch.equal(plain.probs, biased.probs)
    assert not torch.allclose(plain.out, biased.out)


def test_keys_are_the_head_mean_of_the_k_projection_without_bias():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    with torch.inference_mode():
        keys = attn(x, needs=frozenset({"keys"})).keys
    k = (x @ attn.qkv.weight[16:32].T).view(1, 5, 2, 8).mean(2)
    assert torch.allclose(keys, k, atol=1e-6)


def test_unfused_backbone_runs_the_explicit_path_everywhere():
    import harness

    dims = dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, tubelet_size=2, num_frames=4,
                img_size=32, num_classes=3)
    torch.manual_seed(0)
    fused = harness.build_model("video_vit", **dims)
    explicit = harness.build_model("video_vit", fused_attention=False, **dims)
    explicit.load_state_dict(fused.state_dict())
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(fused(clip), explicit(clip), atol=1e-5)
    assert fused.last_stats.attention_kernel == ["sdpa", "sdpa"]
    assert explicit.last_stats.attention_kernel == ["explicit", "explicit"]
