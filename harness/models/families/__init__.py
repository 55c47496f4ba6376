"""The ViT backbone families, one module each; importing this package registers them all (torch-free).

Every module directly under ``harness/models/families/`` (except ``registry`` and ``common``) is imported
here, so a new family is one module with a ``register_family`` call (docs/adding_a_backbone.md). Folders
named in the environment variable ``HARNESS_FAMILIES_PATH`` (separated by ``os.pathsep``) are searched too,
as further parts of this package: a family kept outside the repository (or a scratch copy in a test)
registers the same way, and may register its presets in the same module (``presets.register_backbone``).
"""
from harness.files import FAMILIES_PATH_VARIABLE
from harness.models.families.registry import (BackboneFamily, family_of_model_type, family_registry, get_family,
                                              register_family, unknown_family_message)
from harness.registry import discover_modules

NOT_FAMILIES = ("registry", "common")  # the modules here that declare no family
DISCOVERED = discover_modules(__name__, __path__, FAMILIES_PATH_VARIABLE, "family", skip=NOT_FAMILIES)

__all__ = ["DISCOVERED", "FAMILIES_PATH_VARIABLE", "NOT_FAMILIES", "BackboneFamily", "family_of_model_type", "family_registry",
           "get_family", "register_family", "unknown_family_message"]
