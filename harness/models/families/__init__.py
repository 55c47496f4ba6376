"""The ViT backbone families, one module each; importing this package registers them all (torch-free).

Every module directly under ``harness/models/families/`` (except ``registry`` and ``common``) is imported
here, so a new family is one module with a ``register_family`` call (docs/adding_a_backbone.md). Folders
named in the environment variable ``HARNESS_FAMILIES_PATH`` (separated by ``os.pathsep``) are searched too,
as further parts of this package: a family kept outside the repository (or a scratch copy in a test)
registers the same way, and may register its presets in the same module (``presets.register_backbone``).
"""
import importlib
import os
import pkgutil
import warnings

from harness.files import FAMILIES_PATH_VARIABLE, path_variable_folders
from harness.models.families.registry import (BackboneFamily, family_of_model_type, family_registry, get_family,
                                              register_family, unknown_family_message)

NOT_FAMILIES = ("registry", "common")  # the modules here that declare no family
for _folder in path_variable_folders(FAMILIES_PATH_VARIABLE):
    if not os.path.isdir(_folder):
        warnings.warn(f"{FAMILIES_PATH_VARIABLE}: {_folder} is not a folder; no family is searched there",
                      stacklevel=2)
    elif os.path.abspath(_folder) not in map(os.path.abspath, __path__):
        __path__.append(_folder)

_IN_REPO = {m.name for m in pkgutil.iter_modules(__path__[:1])}
for _folder in __path__[1:]:
    for _shadowed in sorted(_IN_REPO & {m.name for m in pkgutil.iter_modules([_folder])}):
        warnings.warn(f"{FAMILIES_PATH_VARIABLE}: {os.path.join(_folder, _shadowed)} is ignored: "
                      f"harness/models/families/{_shadowed} has the same name", stacklevel=2)

DISCOVERED = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_FAMILIES))
for _name in DISCOVERED:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["DISCOVERED", "FAMILIES_PATH_VARIABLE", "NOT_FAMILIES", "BackboneFamily", "family_of_model_type", "family_registry",
           "get_family", "register_family", "unknown_family_message"]
