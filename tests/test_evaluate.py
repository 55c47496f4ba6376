import pytest
import torch

from harness.measure.accuracy import aggregate_views, topk_correct


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


def test_input_pipeline_and_model_speed_are_reported_apart(tmp_path, monkeypatch):
    import time

    import harness
    from harness.data.datasets import SyntheticMotionDataset
    from harness.measure.accuracy import evaluate_model

    dataset = SyntheticMotionDataset(root=str(tmp_path / "data"), num_train=0, num_val=6)
    model = harness.build_model("synthetic_vit_tiny")
    slow = model.forward

    def slower(x):  # a model far slower than decoding: the evaluation is not input-bound
        time.sleep(0.2)
        return slow(x)

    monkeypatch.setattr(model, "forward", slower)
    metrics = evaluate_model(model, dataset, device=torch.device("cpu"), batch_size=3)["metrics"]
    assert metrics["eval_model_s"] >= 0.4 and not metrics["input_bound"]
    assert metrics["model_videos_per_s"] < metrics["data_videos_per_s"]
    assert metrics["eval_data_wait_s"] + metrics["eval_model_s"] <= metrics["eval_wall_s"] + 1e-3
