"""Token-reduction methods. Importing this package registers every method (torch is not imported)."""
from methods.registry import MethodSpec, get_method, list_methods, method_registry, register_method

from methods import dense as _dense  # noqa: F401  (registration)
from methods import downsample as _downsample  # noqa: F401
from methods import haltingvt as _haltingvt  # noqa: F401
from methods import random_baselines as _random_baselines  # noqa: F401
from methods import rlt as _rlt  # noqa: F401
from methods import sta as _sta  # noqa: F401
from methods import sttm as _sttm  # noqa: F401
from methods import tome as _tome  # noqa: F401
from methods import vid_tldr as _vid_tldr  # noqa: F401

__all__ = ["MethodSpec", "get_method", "list_methods", "method_registry", "register_method"]
