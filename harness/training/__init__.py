"""Fine-tuning: a backbone plus a method's own modules, trained with the method's losses.

    from harness.training import FineTuneConfig, finetune
    result = finetune(FineTuneConfig(backbone={...}, method={...}, dataset={...}), out_dir)

``config`` (torch-free) describes a run and derives its key; ``folders`` lays out a run's folder; ``data`` yields
augmented training clips; ``schedule`` builds the optimiser and the warm-up + cosine learning rate; ``loop``
trains with a checkpoint every epoch and resumes exactly where an interrupted run stopped.
"""
import os
import typing as tp

from harness.training.config import FineTuneConfig
from harness.training.folders import (LAST, LOG, META, MODEL, SHIPPED, adopt_shipped, epochs_done, is_complete,
                                      run_dir)

__all__ = ["FineTuneConfig", "LAST", "LOG", "META", "MODEL", "SHIPPED", "adopt_shipped", "epochs_done", "finetune",
           "is_complete", "resolve_checkpoint", "run_dir"]


def finetune(*args, **kwargs):
    from harness.training.loop import finetune as _finetune

    return _finetune(*args, **kwargs)


def resolve_checkpoint(config: tp.Mapping[str, tp.Any], store_root: str) -> tp.Optional[str]:
    """The weights a cell evaluates: its fine-tune's output, its method entry's own checkpoint, or the backbone's."""
    ft = config["method"].get("finetune")
    if not ft:  # a method entry's own released weights, else the backbone's
        return config["method"].get("weights") or config["backbone"].get("checkpoint")
    folder = run_dir(store_root, ft["key"])
    if not is_complete(folder):
        raise RuntimeError(f"fine-tuning run {ft['name']!r} ({ft['key']}) has not finished: no "
                           f"{os.path.join(folder, MODEL)} (run `python -m harness finetune SUITE`)")
    return os.path.join(folder, MODEL)
