"""Read suite YAML: ``safe_load``, ``include:`` merging, ``${VAR}`` expansion, relative paths.

Every node of the merged tree remembers the file that declared it (``Tree.origins``), so a problem
found later can name the included file that holds the bad value.

Hostile files are refused before they cost anything: the suite file (and each include) must be a
regular file of at most ``MAX_SUITE_BYTES``; includes must live in the suite's folder (or below) and
are not opened otherwise; a key given twice in one mapping is a problem with its line; aliases
(``&a`` / ``*a``) may not expand the tree past ``MAX_NODES`` values ("billion laughs").
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing as tp

import yaml

from harness.data.paths import HF_PREFIX, MAX_SUITE_BYTES, file_problem
from harness.suite._schema import PATH_KEYS, Problem
from harness.suite._types import describe

Path = tp.Tuple[tp.Union[str, int], ...]
_ENV_RE = re.compile(r"\$\{([^}]*)\}")
MAX_NODES = 100_000  # values in one file or --set value after alias expansion
MAX_INCLUDED_FILES = 64  # files opened through include: in one suite, all levels together


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records a key repeated in one mapping (YAML says keys are unique;
    PyYAML keeps the last silently) instead of dropping the first value."""

    duplicates: list

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # merge keys (<<) may legitimately be overridden
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append((key, line, seen[key]))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load_strict(text: str) -> tuple[tp.Any, list]:
    """``yaml.safe_load`` plus the duplicated keys: ``(data, [(key, line, first line), ...])``."""
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


@dataclasses.dataclass
class Tree:
    """A merged suite mapping plus, for each node path, the file that declared it."""

    data: dict
    origins: dict  # Path -> file
    root_file: str  # the suite file itself (absolute)
    loaded: bool = True  # False when the suite file itself could not be read or parsed

    def file_of(self, path: tp.Sequence[tp.Union[str, int]]) -> str:
        """The file that declared ``path`` (its longest declared prefix), else the suite file."""
        path = tuple(path)
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.root_file


def format_path(path: tp.Sequence[tp.Union[str, int]]) -> str:
    """``("methods", 1, "r")`` -> ``"methods[1].r"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_tree(path: tp.Union[str, os.PathLike], problems: list) -> Tree:
    """Load ``path`` and its includes (the including file wins; dicts merge deeply, lists are replaced)."""
    root = os.path.abspath(os.fspath(path))
    try:
        data, origins, include = _load_file(root, (), problems, os.path.dirname(os.path.realpath(root)),
                                            [MAX_INCLUDED_FILES])
    except _IncludeFanOut:  # each file including the next several times: found before the 10^n loads
        problems.append(Problem(root, "include", f"the suite's includes open more than {MAX_INCLUDED_FILES} files "
                                                 "in all (counting every level); include each file once, from "
                                                 "fewer places"))
        return Tree({}, {}, root, loaded=False)
    if data is None:
        return Tree({}, {}, root, loaded=False)
    if include is not None:  # keep the suite's own include list (as written) for the record
        data["include"], origins[("include",)] = include, root
    return Tree(data, origins, root)


def _load_file(file: str, stack: tuple, problems: list, home: str,
               budget: list) -> tuple[tp.Optional[dict], dict, tp.Any]:
    raw = _read_mapping(file, problems)
    if raw is None:
        return None, {}, None
    variables = raw.get("variables")
    hints = {k: v for k, v in variables.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(variables, dict) else {}
    raw = _clean(raw, (), file, problems, set(), hints)
    if raw is None:  # expanded past MAX_NODES (reported)
        return None, {}, None
    resolve_entry_paths(raw, os.path.dirname(file))
    include = raw.pop("include", None)
    merged: dict = {}
    merged_origins: dict = {}
    stack = stack + (os.path.realpath(file),)
    for i, inc in enumerate(_include_list(include, file, problems)):
        inc_file = os.path.normpath(os.path.join(os.path.dirname(file), os.path.expanduser(inc)))
        real = os.path.realpath(inc_file)
        if os.path.commonpath([home, real]) != home:  # never open (or quote) a file outside the suite's folder
            problems.append(Problem(file, f"include[{i}]", f"{inc!r} is outside the suite's folder {home}; "
                                                            "included files must live in it or below it"))
            continue
        if real in stack:
            chain = " -> ".join(list(stack) + [real])
            problems.append(Problem(file, f"include[{i}]", f"include cycle: {chain}"))
            continue
        if not os.path.lexists(inc_file):
            problems.append(Problem(file, f"include[{i}]", f"included file not found: {inc_file}"))
            continue
        problem = file_problem(inc_file, MAX_SUITE_BYTES, what="suite file")
        if problem:
            problems.append(Problem(file, f"include[{i}]", problem))
            continue
        budget[0] -= 1
        if budget[0] < 0:
            raise _IncludeFanOut()
        child, child_origins, _ = _load_file(inc_file, stack, problems, home, budget)
        if child is None:
            continue
        child.pop("name", None)  # a suite's name is its own (or its file stem), never inherited
        merge(merged, merged_origins, child, child_origins)
    merge(merged, merged_origins, raw, _origins_of(raw, file))
    return merged, merged_origins, include


def _read_mapping(file: str, problems: list) -> tp.Optional[dict]:
    if not os.path.lexists(file):
        problems.append(Problem(file, "", f"suite file not found: {file}"))
        return None
    problem = file_problem(file, MAX_SUITE_BYTES, what="suite file")  # a FIFO or /dev/zero would hang
    if problem:
        problems.append(Problem(file, "", problem))
        return None
    try:
        with open(file, "rb") as fh:
            text = fh.read(MAX_SUITE_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(file, "", f"cannot read {file}: {type(err).__name__}: {getattr(err, 'strerror', None) or err}"))
        return None
    if len(text) > MAX_SUITE_BYTES:
        problems.append(Problem(file, "", f"{file} grew past {MAX_SUITE_BYTES} bytes while being read"))
        return None
    try:
        data, duplicates = safe_load_strict(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        detail = getattr(err, "problem", None) or type(err).__name__  # never str(err): it quotes the file
        problems.append(Problem(file, "", f"invalid YAML{where}: {detail}"))
        return None
    except (ValueError, RecursionError) as err:  # e.g. a timestamp like 2024-13-01
        problems.append(Problem(file, "", f"invalid YAML: {err}"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(file, "", f"YAML root must be a mapping in {file} (got {describe(data)})"))
        return None
    for key, line, first in duplicates:
        problems.append(Problem(file, "", f"line {line}: duplicate key {str(key)[:60]!r} (first given on line "
                                          f"{first}); each key may appear once in a mapping"))
    return None if duplicates else data


def _include_list(include: tp.Any, file: str, problems: list) -> list[str]:
    if include is None:
        return []
    if not isinstance(include, list):
        hint = f" (write include: [{include}])" if isinstance(include, str) else ""
        problems.append(Problem(file, "include", f"expected list of str, got {describe(include)}{hint}"))
        return []
    good = []
    for i, inc in enumerate(include):
        if isinstance(inc, str) and inc:
            good.append(inc)
        else:
            problems.append(Problem(file, f"include[{i}]", f"expected a file path, got {describe(inc)}"))
    return good


class _TooLarge(Exception):
    pass


class _IncludeFanOut(Exception):
    pass


def _clean(value: tp.Any, path: Path, file: str, problems: list, active: set,
           hints: tp.Optional[dict] = None) -> tp.Any:
    """Copy ``value``: expand ``${VAR}`` in strings, drop non-string keys, cut recursive aliases;
    None (and a problem) when aliases expand it past ``MAX_NODES`` values."""
    budget = [MAX_NODES]
    try:
        return _clean_node(value, path, file, problems, active, hints, budget)
    except _TooLarge:
        problems.append(Problem(file, format_path(path), f"the YAML expands to more than {MAX_NODES} values "
                                                         "through its &anchor / *alias references; refused"))
        return None


def _clean_node(value: tp.Any, path: Path, file: str, problems: list, active: set,
                hints: tp.Optional[dict], budget: list) -> tp.Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(value, (dict, list)):
        if id(value) in active:
            problems.append(Problem(file, format_path(path), "recursive YAML alias"))
            return None
        active = active | {id(value)}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(Problem(file, format_path(path + (str(k),)),
                                        f"keys must be strings, got {describe(k)}"))
                continue
            out[k] = _clean_node(v, path + (k,), file, problems, active, hints, budget)
        return out
    if isinstance(value, list):
        return [_clean_node(v, path + (i,), file, problems, active, hints, budget) for i, v in enumerate(value)]
    if isinstance(value, str):
        return expand_env(value, format_path(path), file, problems, hints)
    return value


def expand_env(text: str, field: str, file: str, problems: list, hints: tp.Optional[dict] = None) -> str:
    """Replace ``${VAR}`` from the environment; an unset or malformed one is a Problem.

    ``hints`` (the suite's ``variables:`` mapping) say what an unset variable must point to.
    """

    def sub(match: re.Match) -> str:
        var = match.group(1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            problems.append(Problem(file, field, f"bad variable reference ${{{var}}} in {text!r}"))
            return match.group(0)
        if var not in os.environ:
            hint = (hints or {}).get(var)
            problems.append(Problem(file, field, f"environment variable {var!r} is not set (used in {text!r})"
                                    + (f"; it must point to {hint}" if hint else "")))
            return match.group(0)
        if "${" in os.environ[var]:  # would read as an unset reference and skip the path checks
            problems.append(Problem(file, field, f"environment variable {var!r} holds '${{' ({os.environ[var][:80]!r}); "
                                                 "variables are expanded once: set it to the path itself"))
            return match.group(0)
        return os.environ[var]

    return _ENV_RE.sub(sub, text)


def resolve_entry_paths(data: dict, base_dir: str) -> None:
    """Make the path-like entry keys (``PATH_KEYS``) absolute against ``base_dir``, in place.

    Idempotent: absolute paths and empty strings are left as they are; sweep lists are walked.
    """
    for section, keys in PATH_KEYS.items():
        entries = data.get(section)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, dict):
                for key in keys:
                    if key in entry:
                        entry[key] = _resolve(entry[key], base_dir)
    for entry in data.get("finetunes") or []:  # their training/validation datasets hold paths too
        for part in ("dataset", "val_dataset"):
            sub = entry.get(part) if isinstance(entry, dict) else None
            if isinstance(sub, dict):
                for key in PATH_KEYS["datasets"]:
                    if key in sub:
                        sub[key] = _resolve(sub[key], base_dir)


def _resolve(value: tp.Any, base_dir: str) -> tp.Any:
    if isinstance(value, list):
        return [_resolve(v, base_dir) for v in value]
    if isinstance(value, str) and value and not value.startswith(HF_PREFIX):  # hf:ORG/NAME is a hub name
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    return value


def _origins_of(value: tp.Any, file: str, path: Path = ()) -> dict:
    out = {path: file}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_origins_of(v, file, path + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(_origins_of(v, file, path + (i,)))
    return out


def merge(base: dict, base_origins: dict, over: dict, over_origins: dict, prefix: Path = ()) -> None:
    """Merge ``over`` into ``base`` in place: dicts deeply, anything else (lists too) replaced."""
    for k, v in over.items():
        p = prefix + (k,)
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base_origins[p] = over_origins.get(p, base_origins.get(p))
            merge(base[k], base_origins, v, over_origins, p)
        else:
            replace(base_origins, p, {q: f for q, f in over_origins.items() if q[: len(p)] == p})
            base[k] = v


def replace(origins: dict, path: Path, new: dict) -> None:
    """Forget the origins under ``path`` and record ``new`` ones."""
    for q in [q for q in origins if q[: len(path)] == path]:
        del origins[q]
    origins.update(new)
