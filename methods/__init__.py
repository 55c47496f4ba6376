"""Token-reduction methods, one module or package each; importing this package registers them all.

Every module and package directly under ``methods/`` (except ``registry``) is imported here, so a new
method is one folder with a ``register_method`` call in its ``__init__.py``: nothing else to edit.
Registration modules import no torch.
"""
import importlib
import pkgutil

from methods.registry import MethodSpec, get_method, list_methods, method_registry, register_method

DISCOVERED = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "registry"))
for _name in DISCOVERED:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["DISCOVERED", "MethodSpec", "get_method", "list_methods", "method_registry", "register_method"]
