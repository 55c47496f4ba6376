"""A fine-tuning run's folder, ``<store>/finetunes/<key>``: its file names, whether it is complete, how far it
got, and the runs shipped with the repository (copied into a store on first use). What the files hold is
described in ``harness.training.loop``."""
import os

LAST, MODEL, META, LOG = "last.pth", "model.pth", "meta.json", "log.jsonl"

# Fine-tuned weights that ship with the repository (the quickstart's), one folder per run key, laid out
# like a store's run folder (model.pth, meta.json, log.jsonl). Found by the run's content key only: a
# changed recipe, method parameter, initial checkpoint or dataset is another key, hence trained anew.
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "checkpoints", "finetunes")


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
