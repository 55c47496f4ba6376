"""Token-reduction methods, one module or package each; importing this package registers them all.

Every module and package directly under ``methods/`` (except ``registry``) is imported here, so a new
method is one folder with a ``register_method`` call in its ``__init__.py``: nothing else to edit
(docs/adding_a_method.md; a template: docs/method_template/). Folders named in the environment variable
``HARNESS_METHODS_PATH`` (separated by ``os.pathsep``) are searched too, as further parts of the
``methods`` package: a method kept outside this repository (or a scratch copy in a test) registers
the same way. Registration modules import no torch.
"""
import importlib
import os
import pkgutil
import warnings

from methods.registry import MethodSpec, get_method, list_methods, method_registry, register_method

METHODS_PATH_VARIABLE = "HARNESS_METHODS_PATH"
for _folder in filter(None, os.environ.get(METHODS_PATH_VARIABLE, "").split(os.pathsep)):
    if not os.path.isdir(_folder):
        warnings.warn(f"{METHODS_PATH_VARIABLE}: {_folder} is not a folder; no method is searched there",
                      stacklevel=2)
    elif os.path.abspath(_folder) not in map(os.path.abspath, __path__):
        __path__.append(_folder)

_IN_REPO = {m.name for m in pkgutil.iter_modules(__path__[:1])}
for _folder in __path__[1:]:
    for _shadowed in sorted(_IN_REPO & {m.name for m in pkgutil.iter_modules([_folder])}):
        warnings.warn(f"{METHODS_PATH_VARIABLE}: {os.path.join(_folder, _shadowed)} is ignored: methods/{_shadowed} "
                      "has the same name", stacklevel=2)

DISCOVERED = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "registry"))
for _name in DISCOVERED:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["DISCOVERED", "METHODS_PATH_VARIABLE", "MethodSpec", "get_method", "list_methods", "method_registry",
           "register_method"]
