"""Validate a merged suite tree against the schema and registries, and expand it into cells.

Every check appends to one problem list and carries on, so ``validate_suite`` reports all of them.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import typing as tp

from harness.models.bounds import DIM_BOUNDS, number_problems
from harness.suite import _registries
from harness.suite._load import Tree, format_path, load_tree, resolve_entry_paths
from harness.suite._overrides import apply_to, parse_assignment
from harness.data.registry import strip_unkeyed_fields
from harness.suite._paths import path_problem
from harness.suite.spec import CellSpec, MethodSpec
from harness.suite._schema import (ENTRY_SECTIONS, OVERRIDE_FILE, EvalConfig, MeasureConfig, Problem, SuiteConfig,
                                   SuiteError, unknown_key_message)
from harness.suite._types import (check_value, describe, field_default, field_types, is_list_type,
                                  list_item_type, type_name)

MAX_VARIANTS = 4096  # per entry; a larger sweep is almost certainly a typo (split the entry)
MAX_CELLS = 50_000  # per suite, counted before expanding (many entries under MAX_VARIANTS still multiply)


Cell = CellSpec  # the name suites and tests have long used


@dataclasses.dataclass
class Suite:
    """A validated suite: ``config`` as loaded and ``cells()`` in backbone x dataset x method order."""

    config: SuiteConfig
    path: str  # absolute path of the suite file
    _variants: dict = dataclasses.field(default_factory=dict, repr=False)  # section -> expanded entries

    def cells(self) -> list[CellSpec]:
        """Every backbone x dataset x method variant, in that nesting order (each cell owns its parts)."""
        suite = {"name": self.config.name, "file": str(self.path), "version": self.config.version}
        cells = []
        for b, d, m in itertools.product(*(self._variants.get(s, []) for s in ENTRY_SECTIONS)):
            backbone, dataset, method = copy.deepcopy((b["config"], d["config"], m["config"]))
            finetune, finetune_ref = None, None
            if m.get("finetune") is not None:
                finetune = finetune_fields(backbone, m["finetune"])
                from harness.training import FineTuneConfig

                finetune_ref = {"name": m["finetune"]["name"], "key": FineTuneConfig(**finetune).key()}
            # a method entry's released weights (e.g. one per HaltingVT config) are the method's: the backbone
            # keeps the suite's, so reports group them together
            spec = MethodSpec(method["name"], method["params"], finetune_ref, m.get("checkpoint") or None)
            cells.append(CellSpec(backbone, dataset, spec, copy.deepcopy(self.config.eval),
                                  copy.deepcopy(self.config.measure), finetune, m["label"], dict(suite),
                                  dataset_object=d["obj"]))
        return cells

    def finetunes(self) -> list:
        """The distinct ``FineTuneConfig``s the cells need, in cell order."""
        seen, out = set(), []
        for cell in self.cells():
            ft = cell.finetune_config()
            if ft is not None and ft.key() not in seen:
                seen.add(ft.key())
                out.append(ft)
        return out


def finetune_fields(backbone: dict, entry: dict) -> dict:
    """``FineTuneConfig`` fields for fine-tuning ``entry`` (a checked FineTuneEntry) on ``backbone``."""
    fields = {k: copy.deepcopy(v) for k, v in entry.items() if k != "name"}
    return {"backbone": copy.deepcopy(backbone), **fields}


def validate_suite(path: tp.Union[str, os.PathLike], overrides: tp.Sequence[str] = ()) -> list[Problem]:
    """Every problem in the suite at ``path`` with ``overrides`` applied; [] when it is valid.

    Stricter than ``load_suite`` in one respect: a path field naming a file or folder that does not
    exist is a problem here, while ``run`` leaves it to the cells that need it (they fail, the others
    run). A path of the wrong kind (a directory, FIFO or device for a file...) is refused by both.
    """
    return _load(path, overrides, missing_ok=False)[1]


def load_suite(path: tp.Union[str, os.PathLike], overrides: tp.Sequence[str] = ()) -> Suite:
    """Load, merge, override and validate a suite; raise ``SuiteError`` listing every problem.

    Precedence: CLI --set > suite file > included files > dataclass defaults (only null unsets).
    """
    suite, problems = _load(path, overrides, missing_ok=True)
    if problems:
        raise SuiteError(problems)
    return suite


def _load(path: tp.Any, overrides: tp.Sequence[str], missing_ok: bool) -> tuple[Suite, list[Problem]]:
    _registries._ensure_registered()
    problems: list[Problem] = []
    tree = load_tree(path, problems)
    if tree.loaded:
        apply_to(tree.data, tree.origins, overrides, problems)
        resolve_entry_paths(tree.data, os.getcwd())  # paths given with --set are relative to the CWD
        checker = _Checker(tree, missing_ok)
        suite = checker.run()
        problems += checker.problems
    else:
        suite = Suite(SuiteConfig(), tree.root_file)
    return suite, list(dict.fromkeys(problems))  # same problem from several sweep points: once


def dataset_from_overrides(name: str, overrides: tp.Sequence[str]) -> tuple[tp.Any, list[Problem]]:
    """One registered dataset built from ``KEY=VALUE`` strings (``harness data check NAME --set ...``),
    checked exactly as a suite's ``datasets:`` entry; ``(dataset, [])`` or ``(None, problems)``."""
    from harness.suite._load import _clean

    _registries._ensure_registered()
    problems: list[Problem] = []
    entry: dict = {"name": name}
    for text in overrides:
        try:
            key, value = parse_assignment(text, example="num_val=50")
        except ValueError as err:
            problems.append(Problem(OVERRIDE_FILE, text.partition("=")[0].strip(), f"bad value {text!r}: {err}"))
            continue
        value = _clean(value, (key,), OVERRIDE_FILE, problems, set())
        try:
            ann = _registries.entry_fields("datasets", name).get(key)
        except KeyError:
            ann = None  # an unknown dataset: reported below
        if ann is not None and _is_sweep(value, ann):
            problems.append(Problem(OVERRIDE_FILE, key, f"expected {type_name(ann)}, got {describe(value)} "
                                                        "(data check takes one value per key)"))
            continue
        entry[key] = value
    if problems:
        return None, problems
    data = {"datasets": [entry]}
    resolve_entry_paths(data, os.getcwd())
    checker = _Checker(Tree(data, {("datasets",): OVERRIDE_FILE}, OVERRIDE_FILE), missing_ok=False)
    variants = checker._entries("datasets")
    problems = [dataclasses.replace(p, field=p.field.removeprefix("datasets[0]").removeprefix("."))
                for p in dict.fromkeys(checker.problems)]
    if problems or not variants:
        return None, problems or [Problem(OVERRIDE_FILE, "", f"dataset {name!r} could not be built")]
    return variants[0]["obj"], []


class _Checker:
    """Walks a merged tree once, collecting problems and building the typed config and variants."""

    def __init__(self, tree: Tree, missing_ok: bool = True):
        self.tree, self.data, self.problems = tree, tree.data, []
        self.missing_ok = missing_ok

    def problem(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.tree.file_of(path), format_path(path), message))

    def run(self) -> Suite:
        top = field_types(SuiteConfig)
        for key in self.data:
            if key not in top:
                self.problem((key,), unknown_key_message(key, top))
        name = self._scalar("name", str) or os.path.splitext(os.path.basename(self.tree.root_file))[0]
        raw = {key: self._scalar(key, top[key]) for key in ("version", "description", "variables")}
        include = self.data.get("include")  # already checked while loading
        raw["include"] = [x for x in include if isinstance(x, str)] if isinstance(include, list) else None
        entries = {}
        for section in ENTRY_SECTIONS:
            value = self.data.get(section)
            entries[section] = value if isinstance(value, list) else []
        config = SuiteConfig(name=name, **{k: v for k, v in raw.items() if v is not None}, **entries,
                             eval=self._section(EvalConfig, "eval"), measure=self._section(MeasureConfig, "measure"))
        self.finetunes = self._finetunes()
        config.finetunes = list(self.data.get("finetunes") or []) if isinstance(self.data.get("finetunes"), list) else []
        if not self._within_cell_cap():
            return Suite(config, self.tree.root_file, {})
        variants = {section: self._entries(section) for section in ENTRY_SECTIONS}
        self._check_combinations(variants)
        return Suite(config, self.tree.root_file, variants)

    def _within_cell_cap(self) -> bool:
        """The whole suite's size, counted from the sweeps before any variant is built: at most
        ``MAX_CELLS`` cells and variants per section (each entry's own cap, ``MAX_VARIANTS``, is not enough:
        many entries multiply)."""
        counts = {}
        for section in ENTRY_SECTIONS:
            entries = self.data.get(section)
            total = 0
            for entry in entries if isinstance(entries, list) else []:
                name = entry.get("name") if isinstance(entry, dict) else None
                try:
                    types = _registries.entry_fields(section, name) if isinstance(name, str) else None
                except KeyError:
                    types = None
                if types is None:
                    continue  # reported when the entry is checked
                size = 1
                for k, v in entry.items():
                    if k in types and _is_sweep(v, types[k]):
                        size *= max(1, len(v))
                total += size if size <= MAX_VARIANTS else 0  # a larger entry is refused on its own
            counts[section] = total
        cells = 1
        for n in counts.values():
            cells *= max(n, 1)
        if cells <= MAX_CELLS and max(counts.values(), default=0) <= MAX_CELLS:
            return True
        sizes = " x ".join(f"{counts[s]} {s}" for s in ENTRY_SECTIONS)
        self.problem((), f"the suite expands to {cells} cells ({sizes}), more than the {MAX_CELLS} a suite may "
                         "have; split it into several suites")
        return False

    def _check_combinations(self, variants: dict) -> None:
        """Cells that cannot run: a protocol that does not fit the backbone, a method the backbone cannot take."""

        seen = set()
        for b, d, m in itertools.product(*(variants.get(s, []) for s in ENTRY_SECTIONS)):
            try:
                problems = _cell_problems(b["config"], d["obj"], m["config"])
            except Exception:  # noqa: BLE001 -- an invalid entry; its own check reported it
                continue
            for message in problems:
                is_method = message.startswith("method")
                where = f"{b['config']['name']} x {d['config']['name']}" + (f" x {m['label']}" if is_method else "")
                text = f"{where}: {message}"
                if text not in seen:
                    seen.add(text)
                    self.problem(self._method_key_path(m, message) if is_method else ("datasets",), text)

    def _method_key_path(self, variant: dict, message: str) -> tuple:
        """``methods[i].<key>`` when a method's message starts with one of the entry's keys
        (``method 'tome': r=1000 asks ...``), so that the file (or ``--set``) that gave it is named."""
        body = message.split(": ", 1)[1] if message.startswith("method ") and ": " in message else message
        first = body.replace("=", " ").split(" ", 1)[0]
        path = variant.get("path")
        entries = self.data.get("methods")
        if path and isinstance(entries, list) and path[1] < len(entries) and isinstance(entries[path[1]], dict) \
                and first in entries[path[1]]:
            return path + (first,)
        return ("methods",)

    def _scalar(self, key: str, ann: tp.Any) -> tp.Any:
        value = self.data.get(key)
        if value is None:
            return None
        ok, coerced = check_value(value, ann)
        if not ok:
            self.problem((key,), f"expected {type_name(ann)}, got {describe(value)}")
            return None
        return coerced

    def _section(self, cls: type, key: str) -> tp.Any:
        """eval/measure: typed fields, unknown keys, then the dataclass's own check()."""
        value = self.data.get(key)
        if value is None:
            return cls()
        if not isinstance(value, dict):
            self.problem((key,), f"expected a mapping of {', '.join(field_types(cls))}, got {describe(value)}")
            return cls()
        kwargs = self._typed_fields(value, field_types(cls), (key,))
        obj = cls(**kwargs)
        for message in obj.check():
            self._check_problem((key,), value, message)
        return obj

    def _typed_fields(self, mapping: dict, types: dict, path: tuple) -> dict:
        kwargs = {}
        for k, v in mapping.items():
            if k not in types:
                self.problem(path + (k,), unknown_key_message(k, types))
            elif v is not None:  # null = unset: the default applies
                ok, coerced = check_value(v, types[k])
                if ok:
                    kwargs[k] = coerced
                else:
                    self.problem(path + (k,), f"expected {type_name(types[k])}, got {describe(v)}")
        return kwargs

    def _check_problem(self, path: tuple, mapping: dict, message: str) -> None:
        """A check() message, placed on its field when it starts with one the file gave (best effort)."""
        first = message.split(" ", 1)[0]
        self.problem(path + (first,) if first in mapping else path, message)

    # -- backbones / datasets / methods ------------------------------------------------------------

    def _entries(self, section: str) -> list[dict]:
        value = self.data.get(section)
        if value is None or value == []:
            available = ", ".join(_registries.names(section)) or "none registered"
            self.problem((section,), f"no {section} given; add at least one {{name: ...}} (available: {available})")
            return []
        if not isinstance(value, list):
            self.problem((section,), f"expected a list of {{name: ...}} mappings, got {describe(value)}")
            return []
        out = []
        for i, entry in enumerate(value):
            out += self._entry(section, i, entry)
        return self._without_duplicates(section, out)

    def _without_duplicates(self, section: str, variants: list[dict]) -> list[dict]:
        """An entry (or sweep point) that repeats an earlier one would evaluate, store and count the
        same cells twice: a problem naming both."""
        first: dict = {}
        for v in variants:
            config = strip_unkeyed_fields(dict(v["config"])) if section == "datasets" else v["config"]
            ident = json.dumps([config, v.get("checkpoint"), (v.get("finetune") or {}).get("name")],
                               sort_keys=True, default=str)
            if ident in first:
                a, b = first[ident], v
                what = b.get("label") or b["config"].get("name")
                self.problem(b["path"], f"repeats {format_path(a['path'])} ({what}): its cells would be evaluated "
                                        "and counted twice; remove one")
            else:
                first[ident] = v
        return variants

    def _entry(self, section: str, i: int, entry: tp.Any) -> list[dict]:
        path = (section, i)
        if not isinstance(entry, dict):
            self.problem(path, f"expected a mapping {{name: ...}}, got {describe(entry)}")
            return []
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            got = "it is missing" if name is None else f"got {describe(name)}"
            self.problem(path + ("name",), f"expected a registered name ({', '.join(_registries.names(section))}); {got}")
            return []
        try:
            types = _registries.entry_fields(section, name)
        except KeyError as err:  # UnknownNameError carries "did you mean" and the available names
            self.problem(path + ("name",), str(err))
            return []
        axes = self._axes(entry, types, path)
        if axes is None:
            return []
        if section != "backbones" and not self._has_required(section, name, entry, path):
            return []
        size = 1
        for _, options in axes:
            size *= len(options)
        if size > MAX_VARIANTS:
            self.problem(path, f"sweep expands to {size} variants (more than {MAX_VARIANTS}); split the entry")
            return []
        build = getattr(self, f"_build_{section}")
        swept = [k for k, options in axes if len(options) > 1]
        out = []
        for combo in itertools.product(*(options for _, options in axes)):
            kwargs = {k: v for (k, _), v in zip(axes, combo)}
            # a problem at one sweep point says which one: "with r=16: ..."
            where = "with " + " ".join(f"{k}={kwargs[k]!r}" for k in swept) + ":" if swept else ""
            variant = build(name, kwargs, path, entry, where)
            if variant is not None:
                out.append({**variant, "path": path})
        return out

    def _axes(self, entry: dict, types: dict, path: tuple) -> tp.Optional[list]:
        """[(key, [values...])] in file order; a list value is a sweep axis (see module docs)."""
        axes, ok_all = [], True
        for k, v in entry.items():
            if k == "name":
                continue
            if k == "finetune" and path[0] == "methods" and "finetune" not in types:
                types = {**types, "finetune": str}  # a method entry may name its fine-tune (or sweep over several)
            if k == "checkpoint" and path[0] == "methods" and "checkpoint" not in types:
                types = {**types, "checkpoint": str}  # ... or its own weights instead of the backbone's
            if k not in types:
                self.problem(path + (k,), unknown_key_message(k, ["name", *types]))
                ok_all = False
                continue
            if v is None:  # null = unset: the default applies
                continue
            ann = types[k]
            if _is_sweep(v, ann):
                if not v:
                    self.problem(path + (k,), "empty list: a sweep needs at least one value "
                                              "(nest a literal list: [[...]])")
                    ok_all = False
                    continue
                items = [(path + (k, j), item) for j, item in enumerate(v)]
            else:
                items = [(path + (k,), v)]
            options = []
            for item_path, item in items:
                ok, coerced = check_value(item, ann)
                problem = path_problem(path[0], k, coerced, missing_ok=self.missing_ok) if ok else None
                if problem and not os.path.lexists(coerced):  # missing: reported, the entry still checked
                    self.problem(item_path, problem)
                    problem = None
                if ok and problem is None:
                    options.append(coerced)
                else:
                    ok_all = False
                    self.problem(item_path, problem or f"expected {type_name(ann)}, got {describe(item)}")
            axes.append((k, options))
        return axes if ok_all else None

    def _has_required(self, section: str, name: str, entry: dict, path: tuple) -> bool:
        missing = [f.name for f in dataclasses.fields(_registries.entry_class(section, name))
                   if f.init and field_default(f) is dataclasses.MISSING and entry.get(f.name) is None]
        for key in missing:
            self.problem(path + (key,), f"missing required key {key!r} for {section[:-1]} {name!r}")
        return not missing

    def _build_backbones(self, name: str, kwargs: dict, path: tuple, entry: dict, where: str) -> tp.Optional[dict]:
        dims = {k: v for k, v in kwargs.items() if k != "checkpoint"}
        bad = _dim_problems(dims)
        for k, message in bad:
            self.problem(path + (k,), f"{where} {message}".strip())
        if bad:
            return None
        from harness.models.dims import resolve_backbone

        try:
            resolve_backbone(name, dims, kwargs.get("checkpoint"))
        except Exception as err:  # resolve_config raises ValueError; anything else is reported too
            self.problem(path, f"{where} {_err(err)}".strip())
            return None
        return {"config": dict(sorted({"name": name, **kwargs}.items()))}

    def _build_datasets(self, name: str, kwargs: dict, path: tuple, entry: dict, where: str) -> tp.Optional[dict]:
        try:
            obj = _registries.entry_class("datasets", name)(**kwargs)
            messages = obj.check() if hasattr(obj, "check") else []
        except Exception as err:  # a dataset's __init__/check raising is a problem in the suite, reported
            self.problem(path, f"{where} {_err(err)}".strip())
            return None
        fields = {f.name: None for f in dataclasses.fields(obj)}
        for message in messages:
            self._check_problem(path, {**fields, **entry}, f"{where} {message}".strip() if where else message)
        if messages:
            return None
        return {"config": {"name": name, **dataclasses.asdict(obj)}, "obj": obj}

    def _build_methods(self, name: str, kwargs: dict, path: tuple, entry: dict, where: str) -> tp.Optional[dict]:
        spec = _registries.lookup("methods", name)
        checkpoint = kwargs.pop("checkpoint", None)
        finetune, ref = None, kwargs.pop("finetune", None)
        if checkpoint is not None and ref is not None:
            self.problem(path + ("checkpoint",), f"{where} give either checkpoint (weights to evaluate) or "
                                                 "finetune (weights to train first), not both".strip())
            return None
        if ref is not None:
            finetune = self._finetune_for(name, spec, kwargs, ref, path, where)
            if finetune is None:
                return None
            kwargs = {**finetune["method"]["params"], **kwargs}
        try:
            params = spec.make_params(kwargs)
        except Exception as err:  # make_params raises ValueError (TypeError for a missing field)
            text = _err(err)
            body = text.split(": ", 1)[1] if text.startswith("method ") and ": " in text else text
            first = body.split(" ", 1)[0]
            self.problem(path + (first,) if first in entry else path, f"{where} {text}".strip())
            return None
        values = dataclasses.asdict(params)
        bad = _param_number_problems(values)
        for k, message in bad:
            self.problem(path + (k,) if k in entry else path, f"{where} method {name!r}: {message}".strip())
        if bad:
            return None
        label = _label(name, params, values) + (f" ft={finetune['name']}" if finetune else "")
        if checkpoint:  # its own weights: name the file, since the table's title names the backbone's
            label += f" weights={os.path.basename(str(checkpoint))}"
        return {"config": {"name": name, "params": values}, "label": label, "finetune": finetune,
                "checkpoint": checkpoint}

    # -- finetunes ------------------------------------------------------------------------------

    def _finetune_for(self, name: str, spec: tp.Any, kwargs: dict, ref: tp.Any, path: tuple,
                      where: str) -> tp.Optional[dict]:
        """The checked fine-tune entry a method entry names; its knobs must be the trained ones."""
        if not isinstance(ref, str):
            self.problem(path + ("finetune",), f"expected the name of a finetunes entry, got {describe(ref)}")
            return None
        if ref not in self.finetunes:
            import difflib

            close = difflib.get_close_matches(ref, list(self.finetunes), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.problem(path + ("finetune",), f"no finetunes entry named {ref!r}{hint} "
                                               f"(defined: {', '.join(self.finetunes) or 'none'})")
            return None
        ft = self.finetunes[ref]
        if ft is False:
            return None  # the entry itself is invalid and was reported
        if ft["method"]["name"] != name:
            self.problem(path + ("finetune",), f"finetune {ref!r} trains method {ft['method']['name']!r}, not {name!r}")
            return None
        trained = ft["method"]["params"]
        for k, v in kwargs.items():
            if k not in spec.inference_only and trained.get(k) != v:
                self.problem(path + (k,), f"{where} {k}={v!r} differs from the fine-tuned value {trained.get(k)!r} "
                                          f"of finetune {ref!r}; only {', '.join(spec.inference_only) or 'no'} knob(s) "
                                          "may change at evaluation (add another finetunes entry)".strip())
                return None
        return ft

    def _finetunes(self) -> dict:
        """name -> checked FineTuneEntry dict (``False`` for an invalid entry, reported once)."""
        from harness.suite._schema import FineTuneEntry, bounded
        from harness.training.config import recipe_problems

        value = self.data.get("finetunes")
        if value is None:
            return {}
        if not isinstance(value, list):
            self.problem(("finetunes",), f"expected a list of fine-tuning runs, got {describe(value)}")
            return {}
        out: dict = {}
        types = field_types(FineTuneEntry)
        for i, entry in enumerate(value):
            path = ("finetunes", i)
            if not isinstance(entry, dict):
                self.problem(path, f"expected a mapping {{name, method, dataset, ...}}, got {describe(entry)}")
                continue
            n_before = len(self.problems)
            kwargs = self._typed_fields(entry, types, path)
            name = kwargs.get("name")
            if not name:
                self.problem(path + ("name",), "a fine-tuning run needs a name (methods refer to it)")
                continue
            if name in out:
                self.problem(path + ("name",), f"duplicate finetunes name {name!r}")
                continue
            ft = FineTuneEntry(**kwargs)
            method = self._ft_method(ft.method, path + ("method",))
            dataset = self._ft_dataset(ft.dataset, path + ("dataset",))
            val = self._ft_dataset(ft.val_dataset, path + ("val_dataset",)) if ft.val_dataset else None
            for k, message in recipe_problems(ft.recipe):
                if message.startswith("unknown recipe key"):
                    from harness.training.config import RECIPE_KEYS

                    message = unknown_key_message(k, RECIPE_KEYS)
                self.problem(path + ("recipe", k), message)
            for message in bounded(ft, limit=(1, 10 ** 9), val_limit=(1, 10 ** 9), seed=(0, 2 ** 63 - 1),
                                   threads=(1, 4096)):
                self._check_problem(path, entry, message)
            for message in _augment_problems(ft.augment):
                self.problem(path + ("augment",), message)
            if len(self.problems) > n_before or method is None or dataset is None:
                out[name] = False
                continue
            out[name] = {**dataclasses.asdict(ft), "method": method, "dataset": dataset, "val_dataset": val}
        return out

    def _ft_method(self, value: dict, path: tuple) -> tp.Optional[dict]:
        name = value.get("name")
        try:
            spec = _registries.lookup("methods", name)
        except KeyError as err:
            self.problem(path + ("name",), str(err))
            return None
        n_before = len(self.problems)
        given = {k: v for k, v in value.items() if k != "name"}
        kwargs = self._typed_fields(given, field_types(spec.params), path)
        if len(self.problems) > n_before:
            return None
        try:
            params = spec.make_params(kwargs)
        except Exception as err:  # noqa: BLE001 -- reported as a suite problem
            text = _err(err)
            first = (text.split(": ", 1)[1] if text.startswith("method ") and ": " in text else text).split(" ", 1)[0]
            self.problem(path + (first,) if first in given else path, text)
            return None
        bad = _param_number_problems(dataclasses.asdict(params))
        for k, message in bad:
            self.problem(path + (k,), f"method {name!r}: {message}")
        return None if bad else {"name": name, "params": dataclasses.asdict(params)}

    def _ft_dataset(self, value: dict, path: tuple) -> tp.Optional[dict]:
        """A fine-tune's training/validation dataset: the same checks as a ``datasets:`` entry, no sweeps."""
        name = value.get("name")
        if not isinstance(name, str) or not name:
            self.problem(path + ("name",), f"expected a registered dataset name ({', '.join(_registries.names('datasets'))})")
            return None
        try:
            cls = _registries.entry_class("datasets", name)
        except KeyError as err:
            self.problem(path + ("name",), str(err))
            return None
        types = field_types(cls)
        n_before = len(self.problems)
        fields = self._typed_fields({k: v for k, v in value.items() if k != "name"}, types, path)
        for k, v in fields.items():
            problem = path_problem("datasets", k, v, missing_ok=self.missing_ok)
            if problem:
                self.problem(path + (k,), problem)
        if len(self.problems) > n_before:
            return None
        try:
            obj = cls(**fields)
            messages = obj.check() if hasattr(obj, "check") else []
        except Exception as err:  # noqa: BLE001 -- a dataset's __init__/check raising: a suite problem
            self.problem(path, _err(err))
            return None
        for message in messages:
            self._check_problem(path, value, message)
        return None if messages else {"name": name, **dataclasses.asdict(obj)}


MAX_PARAM_MAGNITUDE = 1e12  # no method knob means anything past this; past it, integer maths overflows


def _param_number_problems(values: dict) -> list[tuple[str, str]]:
    """Method knobs that no method can mean: NaN, infinities, magnitudes past ``MAX_PARAM_MAGNITUDE``
    (ranges that depend on the method are its own ``check()``/``check_backbone()``)."""
    import math

    def bad(v: tp.Any) -> bool:
        if isinstance(v, (list, tuple)):
            return any(bad(x) for x in v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return not math.isfinite(v) or abs(v) > MAX_PARAM_MAGNITUDE

    return [(k, f"{k} must be finite and at most {MAX_PARAM_MAGNITUDE:g} in magnitude, got {v!r}")
            for k, v in values.items() if bad(v)]


def _dim_problems(dims: dict) -> list[tuple[str, str]]:
    """Backbone dims outside ``DIM_BOUNDS`` (NaN and infinities included): ``[(dim, message)]``."""
    # a whole number below the bound: the preset's check says "must be positive" (or >= 0)
    return [(k, m) for k, m in number_problems(dims)
            if not (isinstance(dims[k], int) and not isinstance(dims[k], bool) and dims[k] < DIM_BOUNDS[k][0])]


def _augment_problems(augment: tp.Any) -> list[str]:
    """``augment: {scale: [lo, hi], flip: bool}`` of a fine-tune."""
    import math

    problems = []
    unknown = sorted(set(augment) - {"scale", "flip"})
    if unknown:
        problems.append(f"unknown augment key(s) {unknown}; valid: scale, flip")
    scale = augment.get("scale", [0.5, 1.0])
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale)
            and 0 < scale[0] <= scale[1] <= 1):
        problems.append(f"augment.scale must be [lo, hi] with 0 < lo <= hi <= 1, got {scale!r}")
    if not isinstance(augment.get("flip", True), bool):
        problems.append(f"augment.flip must be true or false, got {augment.get('flip')!r}")
    return problems


def _is_sweep(value: tp.Any, ann: tp.Any) -> bool:
    """A list is a sweep unless the field is itself a list; then only a list of lists is."""
    if not isinstance(value, list):
        return False
    if not is_list_type(ann):
        return True
    return bool(value) and all(isinstance(v, list) for v in value) and not is_list_type(list_item_type(ann))


def _err(err: Exception) -> str:
    text = str(err) or type(err).__name__
    return text if isinstance(err, (ValueError, KeyError)) else f"{type(err).__name__}: {text}"


def _whole_floats_as_ints(value: tp.Any) -> tp.Any:
    """For display: ``[16.0, 0.25]`` reads ``[16,0.25]``."""
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _label(name: str, params: tp.Any, values: dict) -> str:
    parts = [name]
    for f in dataclasses.fields(params):
        default = field_default(f)
        if default is not dataclasses.MISSING and dataclasses.is_dataclass(default):
            default = dataclasses.asdict(default)
        if f.name in values and (default is dataclasses.MISSING or values[f.name] != default):
            v = _whole_floats_as_ints(values[f.name])
            parts.append(f"{f.name}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'), default=str)}")
    return " ".join(parts)


def _cell_problems(backbone: dict, dataset: tp.Any, method: dict) -> tp.List[str]:
    """Problems of one cell from its backbone dict, dataset object and ``{"name", "params"}`` method dict."""
    import methods
    from harness.models.compatibility import class_problems, count_problems, method_problems, protocol_problems
    from harness.models.dims import backbone_config

    cfg = backbone_config(backbone)
    params = methods.get_method(method["name"]).params(**method["params"])
    return (protocol_problems(dataset, cfg) + class_problems(dataset, cfg)
            + method_problems(method["name"], params, cfg)
            + count_problems(method["name"], params, cfg))
