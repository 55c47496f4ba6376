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
