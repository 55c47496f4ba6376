"""Command-line overrides: ``--set eval.limit=50``, ``--set datasets.*.data_root=/data``.

Precedence: CLI --set > suite file > included files > dataclass defaults. Only an explicit ``null``
unsets a value (the default applies again); an empty value (``eval.device=``) is the empty string.
``parse_assignment`` is the one reading of a ``KEY=VALUE`` string, here, in ``data check`` and in ``viz``.
"""
from __future__ import annotations

import copy
import typing as tp

import yaml

from harness.suite import _registries
from harness.suite._load import _clean, _origins_of, replace, safe_load_strict
from harness.suite._schema import OVERRIDE_FILE, Problem, SuiteError, unknown_key_message
from harness.suite._types import describe


class _BadOverride(Exception):
    pass


def parse_assignment(text: tp.Any, example: str = "eval.limit=50") -> tuple[str, tp.Any]:
    """``"KEY=VALUE"`` -> ``(KEY, value)``: the one reading of every ``--set`` (suite overrides, a dataset's
    fields in ``data check NAME``, a method's parameters in ``viz --method``).

    KEY is the text before the first ``=``, stripped, and must not be empty. VALUE is YAML: ``16`` is an int,
    ``[4,8]`` a list, ``'007'`` a string, and a mapping that repeats a key is refused. An empty or blank VALUE
    is the empty string ``""``, never None: only an explicit ``null`` (or ``~``) gives None (the default).
    Raises ``ValueError`` with a one-line reason (``example`` shows the form expected).

    >>> parse_assignment("eval.limit = 50"), parse_assignment("eval.device="), parse_assignment("r=null")
    (('eval.limit', 50), ('eval.device', ''), ('r', None))
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"expected KEY=VALUE, e.g. {example}")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ValueError(f"nothing before '=': expected KEY=VALUE, e.g. {example}")
    if raw.strip() == "":
        return key, ""
    try:
        value, duplicates = safe_load_strict(raw)
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        raise ValueError(f"value is not valid YAML ({str(err).splitlines()[0]})") from None
    if duplicates:
        raise ValueError(f"duplicate key {str(duplicates[0][0])[:60]!r} in the value")
    return key, value


def apply_overrides(mapping: dict, overrides: tp.Sequence[str]) -> dict:
    """Return a copy of a suite ``mapping`` with ``PATH=VALUE`` overrides applied.

    Paths are dotted; integer parts index lists and ``*`` means every element. Values are parsed
    with ``yaml.safe_load`` (``[8,16]`` is a list, ``null`` is None). A bad override raises
    ``SuiteError`` naming every bad override at once.

    >>> apply_overrides({"eval": {"limit": 5}}, ["eval.limit=50", "measure.repeats=1"])
    {'eval': {'limit': 50}, 'measure': {'repeats': 1}}
    """
    data = copy.deepcopy(dict(mapping))
    problems: list[Problem] = []
    apply_to(data, {}, overrides, problems)
    if problems:
        raise SuiteError(problems)
    return data


def apply_to(data: dict, origins: dict, overrides: tp.Sequence[str], problems: list) -> None:
    """Apply ``overrides`` in order to ``data`` in place, recording their origin as ``--set``."""
    for text in overrides:
        try:
            _apply_one(data, origins, text, problems)
        except _BadOverride as err:
            dotted = text.partition("=")[0].strip() if isinstance(text, str) else ""
            problems.append(Problem(OVERRIDE_FILE, dotted, f"bad override {text!r}: {err}"))


def _apply_one(data: dict, origins: dict, text: tp.Any, problems: list) -> None:
    try:
        dotted, value = parse_assignment(text)
    except ValueError as err:
        raise _BadOverride(str(err)) from None
    parts = dotted.split(".")
    if "" in parts:
        raise _BadOverride(f"empty part in path {dotted!r}")
    if parts[0] == "include":
        raise _BadOverride("include cannot be overridden; pass a different suite file")
    value = _clean(value, (dotted,), OVERRIDE_FILE, problems, set())
    _set(data, data, origins, parts, (), value)


def _set(root: dict, node: tp.Any, origins: dict, parts: list, path: tuple, value: tp.Any) -> None:
    part, rest = parts[0], parts[1:]
    where = ".".join(str(p) for p in path) or "the top level"
    if isinstance(node, list):
        if part == "*":
            indices = list(range(len(node)))
        elif part.isdigit():
            if int(part) >= len(node):
                raise _BadOverride(f"index {part} is out of range: {where} has {len(node)} entries")
            indices = [int(part)]
        else:
            raise _BadOverride(f"{where} is a list; expected an index or '*', got {part!r}")
        for i in indices:
            _step(root, node, i, origins, rest, path, value)
        return
    if not isinstance(node, dict):
        raise _BadOverride(f"cannot set {part!r} inside {where}, which is {describe(node)}")
    if part == "*":
        raise _BadOverride(f"'*' needs a list, but {where} is a mapping")
    valid = _registries.keys_at(root, path)
    if valid is not None and part not in valid and part not in node:
        raise _BadOverride(f"{unknown_key_message(part, valid)} (in {where})")
    if rest and node.get(part) is None:
        if valid is not None and _registries.is_section_type(valid.get(part)):
            node[part] = {}  # e.g. measure.repeats=1 in a suite without a measure: section
        else:
            raise _BadOverride(f"there is no {part!r} in {where} to descend into")
    _step(root, node, part, origins, rest, path, value)


def _step(root: dict, node: tp.Any, key: tp.Any, origins: dict, rest: list, path: tuple, value: tp.Any) -> None:
    if rest:
        _set(root, node[key], origins, rest, path + (key,), value)
    else:
        node[key] = copy.deepcopy(value)
        replace(origins, path + (key,), _origins_of(node[key], OVERRIDE_FILE, path + (key,)))
