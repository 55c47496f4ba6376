"""Fine-tuning: a backbone plus a method's own modules, trained with the method's losses.

    from harness.training import FineTuneConfig, finetune
    result = finetune(FineTuneConfig(backbone={...}, method={...}, dataset={...}), out_dir)

``config`` (torch-free) describes a run and derives its key; ``data`` yields augmented training
clips; ``schedule`` builds the optimiser and the warm-up + cosine learning rate; ``loop`` trains with
a checkpoint every epoch and resumes exactly where an interrupted run stopped.
"""
import os
import typing as tp

from harness.training.config import FineTuneConfig

# a run's folder (``run_dir``): what it holds is described in ``harness.training.loop``
LAST, MODEL, META, LOG = "last.pth", "model.pth", "meta.json", "log.jsonl"

__all__ = ["FineTuneConfig", "LAST", "LOG", "META", "MODEL", "epochs_done", "finetune", "is_complete", "resolve_checkpoint", "run_dir"]


def run_dir(store_root: str, key: str) -> str:
    """Where fine-tuning run ``key`` keeps its checkpoints and log: ``<store>/finetunes/<key>``."""
    from harness.layout import Layout

    return str(Layout(store_root).finetune(key))


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


# Fine-tuned weights that ship with the repository (the quickstart's), one folder per run key, laid out
# like a store's run folder (model.pth, meta.json, log.jsonl). Found by the run's content key only: a
# changed recipe, method parameter, initial checkpoint or dataset is another key, hence trained anew.
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "checkpoints", "finetunes")


def adopt_shipped(store_root: str, key: str, shipped: str = SHIPPED) -> bool:
    """Copy the shipped run ``key`` (if there is one) into the store; True when the store now holds it."""
    import shutil

    source, target = os.path.join(shipped, key), run_dir(store_root, key)
    if is_complete(target):
        return True
    if not is_complete(source):
        return False
    os.makedirs(target, exist_ok=True)
    for name in (MODEL, LOG, META):  # meta last: its presence marks the run complete
        if os.path.isfile(os.path.join(source, name)):
            tmp = os.path.join(target, f".{name}.{os.getpid()}.tmp")
            shutil.copyfile(os.path.join(source, name), tmp)
            os.replace(tmp, os.path.join(target, name))
    return is_complete(target)
