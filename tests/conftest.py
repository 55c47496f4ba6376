"""Shared test settings (import them: ``from conftest import TINY, tiny, FAST_MEASURE, deadline``) and pytest hooks."""
import contextlib
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from methods.registry import EXAMPLE_BACKBONE  # noqa: E402 (after the path set-up)

# The registry's test backbone, the one every method's ``examples`` must fit (methods/registry.py states it):
# 16 frames, tubelet 2 -> 8 temporal slices (STA's groups) of 4 x 4 patches = 128 tokens, 32-d, 4 blocks, 5
# classes. Tests that need another shape derive it with ``tiny``.
TINY = dict(EXAMPLE_BACKBONE)

# measurement settings that keep a cell's timing to a fraction of a second (figures are not looked at)
FAST_MEASURE = {"batch_size": 2, "warmup_iters": 1, "warmup_s": 0.0, "timed_iters": 2, "min_timed_s": 0.0,
                "repeats": 2}


@contextlib.contextmanager
def deadline(seconds: int, what: str = "the block"):
    """Fail (instead of hanging) when the block runs longer than ``seconds`` (SIGALRM; main thread only)."""
    def expire(*_):
        raise AssertionError(f"{what} still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def tiny(**changes) -> dict:
    """``TINY`` with some dims changed, e.g. ``tiny(num_frames=4)``."""
    return {**TINY, **changes}


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: brings up a real one-node Slurm cluster (root, apt-get); "
                                       "the slowest tests, run last")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: Slurm tests last
