import pytest
import torch

from harness.evaluate import aggregate_views, topk_correct


def test_prob_and_score_aggregation_differ_as_defined():
    # view 1 is confident for class 0, view 2 mildly prefers class 1
    logits = torch.tensor([[[10.0, 0.0], [0.0, 1.0]]])
    prob = aggregate_views(logits, "prob")
    score = aggregate_views(logits, "score")
    assert torch.allclose(score, torch.tensor([[5.0, 0.5]]))
    p1 = torch.softmax(torch.tensor([10.0, 0.0]), 0)
    p2 = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    assert torch.allclose(prob, ((p1 + p2) / 2)[None])
    with pytest.raises(ValueError):
        aggregate_views(logits, "max")


def test_topk_correct_with_fewer_classes_than_k():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    labels = torch.tensor([2, 0])
    assert topk_correct(scores, labels, 1).tolist() == [False, True]
    assert topk_correct(scores, labels, 5).tolist() == [True, True]
