"""Video data: annotations, samplers, transforms, the multi-view dataset and the synthetic set.

Importing this package registers the datasets and imports no torch, decord or PyAV: those live in
``harness.data.transforms``, ``harness.data.video_dataset`` and ``harness.data.synthetic``,
imported when a dataset is built.
"""
from harness.data import datasets as _datasets  # noqa: F401  (registers the datasets)
from harness.data import real as _real  # noqa: F401  (registers kinetics400, ssv2, ucf101)
from harness.data import minik as _minik  # noqa: F401  (registers minik)
from harness.data.registry import VideoProtocol, data_home, dataset_registry, register_dataset

__all__ = ["VideoProtocol", "build_dataset", "data_home", "dataset_registry", "register_dataset"]


def build_dataset(config):
    """The registered dataset object for a suite/cell dataset dict (``{"name": ..., **fields}``)."""
    return dataset_registry.get(config["name"])(**{k: v for k, v in config.items() if k != "name"})
