"""Fine-tuning: a backbone plus a method's own modules, trained with the method's losses.

    from harness.training import FineTuneConfig, finetune
    result = finetune(FineTuneConfig(backbone={...}, method={...}, dataset={...}), out_dir)

``config`` (torch-free) describes a run and derives its key; ``data`` yields augmented training
clips; ``schedule`` builds the optimiser and the warm-up + cosine learning rate; ``loop`` trains with
a checkpoint every epoch and resumes exactly where an interrupted run stopped.
"""
import os

from harness.training.config import FineTuneConfig

# a run's folder (``run_dir``): what it holds is described in ``harness.training.loop``
LAST, MODEL, META, LOG = "last.pth", "model.pth", "meta.json", "log.jsonl"

__all__ = ["FineTuneConfig", "LAST", "LOG", "META", "MODEL", "epochs_done", "finetune", "is_complete", "run_dir"]


def run_dir(store_root: str, key: str) -> str:
    """Where fine-tuning run ``key`` keeps its checkpoints and log: ``<store>/finetunes/<key>``."""
    return os.path.join(store_root, "finetunes", key)


def is_complete(out_dir: str) -> bool:
    return os.path.isfile(os.path.join(out_dir, META)) and os.path.isfile(os.path.join(out_dir, MODEL))


def epochs_done(out_dir: str) -> int:
    """Finished epochs of a run (lines of its log)."""
    try:
        with open(os.path.join(out_dir, LOG)) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def finetune(*args, **kwargs):
    from harness.training.loop import finetune as _finetune

    return _finetune(*args, **kwargs)
