"""Fine-tuning: a backbone plus a method's own modules, trained with the method's losses.

    from harness.training import FineTuneConfig, finetune
    result = finetune(FineTuneConfig(backbone={...}, method={...}, dataset={...}), out_dir)

``config`` (torch-free) describes a run and derives its key; ``data`` yields augmented training
clips; ``schedule`` builds the optimiser and the warm-up + cosine learning rate; ``loop`` trains with
a checkpoint every epoch and resumes exactly where an interrupted run stopped.
"""
from harness.training.config import FineTuneConfig

__all__ = ["FineTuneConfig", "finetune"]


def finetune(*args, **kwargs):
    from harness.training.loop import finetune as _finetune

    return _finetune(*args, **kwargs)
