"""Check a YAML value against a dataclass field annotation, without constructing anything.

``check_value(value, annotation) -> (ok, coerced)``: ints become floats where a float is expected
(so ``warmup_s: 2`` and ``warmup_s: 2.0`` give the same cell key) and lists become tuples where a
tuple is expected; bools are never accepted as numbers. Annotations we cannot interpret (unresolved
forward references, arbitrary classes) fall back to ``isinstance`` or are accepted as they are.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing as tp

_MISSING = dataclasses.MISSING
_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence, tuple)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def field_types(cls: type) -> dict[str, tp.Any]:
    """Resolved annotations of a dataclass's fields; a field we cannot resolve maps to ``Any``."""
    try:
        hints = tp.get_type_hints(cls)
    except Exception:  # NOTE: a forward reference we cannot resolve; check that field as Any
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        ann = hints.get(f.name, f.type)
        out[f.name] = tp.Any if isinstance(ann, (str, tp.ForwardRef)) else ann
    return out


def field_default(f: dataclasses.Field) -> tp.Any:
    """The field's default value (a fresh one for factories), or ``dataclasses.MISSING``."""
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _MISSING


def _is_union(ann: tp.Any) -> bool:
    return tp.get_origin(ann) is tp.Union or isinstance(ann, types.UnionType)


def is_list_type(ann: tp.Any) -> bool:
    """True for list/tuple/Sequence annotations, also under ``Optional`` (not for other unions)."""
    if _is_union(ann):
        arms = [a for a in tp.get_args(ann) if a is not type(None)]
        return len(arms) == 1 and is_list_type(arms[0])
    return ann in (list, tuple) or tp.get_origin(ann) in _LIST_ORIGINS


def list_item_type(ann: tp.Any) -> tp.Any:
    """Element annotation of a list type (``Any`` when unparametrised)."""
    if _is_union(ann):
        return list_item_type(next(a for a in tp.get_args(ann) if a is not type(None)))
    args = [a for a in tp.get_args(ann) if a is not Ellipsis]
    return args[0] if len(set(args)) == 1 else tp.Any


def type_name(ann: tp.Any) -> str:
    """Human-readable annotation: ``int``, ``int or null``, ``list of float``, ``one of 'a', 'b'``."""
    if ann is tp.Any:
        return "any value"
    if ann is type(None):
        return "null"
    if tp.get_origin(ann) is tp.Literal:
        return "one of " + ", ".join(repr(a) for a in tp.get_args(ann))
    if _is_union(ann):
        return " or ".join(type_name(a) for a in tp.get_args(ann))
    origin = tp.get_origin(ann)
    if ann in (list, tuple) or origin in _LIST_ORIGINS:
        item = list_item_type(ann)
        return "list" if item is tp.Any else f"list of {type_name(item)}"
    if ann is dict or origin in _DICT_ORIGINS:
        return "mapping"
    return getattr(ann, "__name__", str(ann))


def describe(value: tp.Any, limit: int = 60) -> str:
    """``str 'abc'``, ``bool True``, ``null``: the YAML type and a short repr of a bad value."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def check_value(value: tp.Any, ann: tp.Any) -> tuple[bool, tp.Any]:
    """``(True, coerced)`` when ``value`` fits ``ann``, else ``(False, value)``."""
    if ann is tp.Any or ann is object:
        return True, value
    if ann is type(None) or ann is None:
        return value is None, value
    origin = tp.get_origin(ann)
    if origin is tp.Literal:  # strict: True is not 1, 1.0 is not 1
        return any(value == a and type(value) is type(a) for a in tp.get_args(ann)), value
    if _is_union(ann):
        for arm in tp.get_args(ann):
            ok, coerced = check_value(value, arm)
            if ok:
                return True, coerced
        return False, value
    if ann in (list, tuple) or origin in _LIST_ORIGINS:
        return _check_sequence(value, ann)
    if ann is dict or origin in _DICT_ORIGINS:
        return _check_mapping(value, ann)
    if ann is bool:
        return isinstance(value, bool), value
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if ann is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, (float(value) if ok else value)
    if isinstance(ann, type):
        return isinstance(value, ann), value
    return True, value  # NOTE: an annotation we do not understand (TypeVar, Callable, ...): accept


def _check_sequence(value: tp.Any, ann: tp.Any) -> tuple[bool, tp.Any]:
    if not isinstance(value, (list, tuple)):
        return False, value
    args = tp.get_args(ann)
    is_tuple = ann is tuple or tp.get_origin(ann) is tuple
    if is_tuple and args and Ellipsis not in args:  # fixed-length Tuple[X, Y]
        if len(args) != len(value):
            return False, value
        item_types = list(args)
    else:
        item_types = [list_item_type(ann)] * len(value)
    out = []
    for item, item_ann in zip(value, item_types):
        ok, coerced = check_value(item, item_ann)
        if not ok:
            return False, value
        out.append(coerced)
    return True, (tuple(out) if is_tuple else out)


def _check_mapping(value: tp.Any, ann: tp.Any) -> tuple[bool, tp.Any]:
    if not isinstance(value, dict):
        return False, value
    args = tp.get_args(ann)
    key_ann, val_ann = args if len(args) == 2 else (tp.Any, tp.Any)
    out = {}
    for k, v in value.items():
        ok_k, k2 = check_value(k, key_ann)
        ok_v, v2 = check_value(v, val_ann)
        if not (ok_k and ok_v):
            return False, value
        out[k2] = v2
    return True, out
