"""Name -> object registries for methods, backbones and datasets.

Entries are declared with a decorator next to the thing they register. Registration modules are
kept free of torch so that ``harness ls`` and ``harness report`` stay fast; heavy code is named by a
``"module:attr"`` string and imported only when an entry is built (see ``load_object``).
"""
from __future__ import annotations

import difflib
import importlib
import threading
import typing as tp

T = tp.TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message carries close matches and the available names."""

    def __init__(self, kind: str, name: str, available: tp.Sequence[str]):
        self.kind, self.name, self.available = kind, name, list(available)
        super().__init__(unknown_name_message(kind, name, available))

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


def unknown_name_message(kind: str, name: str, available: tp.Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(available), n=3, cutoff=0.5)
    msg = f"unknown {kind} {name!r}."
    if close:
        msg += " Did you mean: " + ", ".join(repr(c) for c in close) + "?"
    shown = sorted(available)
    msg += " Available: " + ", ".join(shown[:20]) + (" ..." if len(shown) > 20 else "")
    return msg


def load_object(target: str) -> tp.Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:attr', got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


class Registry(tp.Generic[T]):
    """A strict, thread-safe name -> object mapping with per-entry metadata."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, tp.Any]] = {}
        self._lock = threading.RLock()

    def register(self, name: str, **meta: tp.Any) -> tp.Callable[[T], T]:
        """Decorator: ``@registry.register("name", key=value)``. Duplicate names raise ValueError."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: tp.Any) -> None:
        with self._lock:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(existing={self._entries[name]!r}, new={obj!r})"
                )
            self._entries[name] = obj
            self._meta[name] = dict(meta)

    def get(self, name: str) -> T:
        with self._lock:
            if name not in self._entries:
                raise UnknownNameError(self.kind, name, list(self._entries))
            return self._entries[name]

    def meta(self, name: str) -> dict[str, tp.Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def discover_modules(package: str, path: tp.List[str], variable: str, what: str,
                     skip: tp.Sequence[str] = ()) -> tp.Tuple[str, ...]:
    """Import every module and package directly in ``package`` (its ``__path__``, ``path``) but ``skip``, after
    adding the folders the environment variable ``variable`` names (``os.pathsep``-separated) to ``path``: a
    plugin kept outside the repository registers as one inside does. A named path that is not a folder, or a
    module that shadows one of the package's own, is ignored with a warning. Returns the imported names."""
    import os
    import pkgutil
    import warnings

    from harness.files import path_variable_folders

    for folder in path_variable_folders(variable):
        if not os.path.isdir(folder):
            warnings.warn(f"{variable}: {folder} is not a folder; no {what} is searched there", stacklevel=3)
        elif os.path.abspath(folder) not in map(os.path.abspath, path):
            path.append(folder)
    own = {m.name for m in pkgutil.iter_modules(path[:1])}
    for folder in path[1:]:
        for shadowed in sorted(own & {m.name for m in pkgutil.iter_modules([folder])}):
            warnings.warn(f"{variable}: {os.path.join(folder, shadowed)} is ignored: {package.replace('.', '/')}/"
                          f"{shadowed} has the same name", stacklevel=3)
    names = tuple(sorted(m.name for m in pkgutil.iter_modules(path) if m.name not in skip))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
