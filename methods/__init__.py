"""Token-reduction methods, one module or package each; importing this package registers them all.

Every module and package directly under ``methods/`` (except ``registry``) is imported here, so a new
method is one folder with a ``register_method`` call in its ``__init__.py``: nothing else to edit
(docs/adding_a_method.md; a template: docs/method_template/). Folders named in the environment variable
``HARNESS_METHODS_PATH`` (separated by ``os.pathsep``) are searched too, as further parts of the
``methods`` package: a method kept outside this repository (or a scratch copy in a test) registers
the same way. Registration modules import no torch.
"""
from harness.registry import discover_modules
from methods.registry import MethodSpec, get_method, list_methods, method_registry, register_method

METHODS_PATH_VARIABLE = "HARNESS_METHODS_PATH"
DISCOVERED = discover_modules(__name__, __path__, METHODS_PATH_VARIABLE, "method", skip=("registry",))

__all__ = ["DISCOVERED", "METHODS_PATH_VARIABLE", "MethodSpec", "get_method", "list_methods", "method_registry",
           "register_method"]
