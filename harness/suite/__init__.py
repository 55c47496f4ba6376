"""Benchmark suites: typed YAML files that expand into backbone x dataset x method cells.

    suite = load_suite("suites/quickstart.yaml", overrides=["eval.limit=50"])
    for cell in suite.cells():
        print(cell.label, cell.key)

Precedence: CLI --set > suite file > included files > dataclass defaults (only an explicit null unsets).

* Keys are derived, never listed: the fields of ``SuiteConfig``/``EvalConfig``/``MeasureConfig``,
  ``DIM_NAMES`` (+ ``checkpoint``) for backbones, the registered dataclass for datasets and
  ``get_method(name).params`` for methods.
* ``include: [base.yaml]`` merges files under this one (relative to it): dicts deeply, lists replaced;
  a suite's ``name`` is never inherited. ``${VAR}`` in any string comes from the environment.
* Path keys (``checkpoint``; ``ann_file``, ``data_root``, ``label_map``, ``root``) are relative to the
  file that declares them (to the CWD for ``--set``); empty strings stay empty.
* In an entry, a list value is a sweep axis (cartesian product in file order); nest a list to pass it
  as one value (``r: [[8, 8, 4]]``). A field typed as a list takes a flat list as one value, and a
  list of lists is then the sweep.
* ``null`` means unset: the dataclass (or preset) default applies, also over an included value.
"""
from harness.suite._expand import Cell as Cell
from harness.suite._expand import Suite as Suite
from harness.suite._expand import dataset_from_overrides as dataset_from_overrides
from harness.suite._expand import load_suite as load_suite
from harness.suite._expand import validate_suite as validate_suite
from harness.suite._overrides import apply_overrides as apply_overrides
from harness.suite._overrides import parse_assignment as parse_assignment
from harness.suite._schema import EvalConfig as EvalConfig
from harness.suite._schema import MeasureConfig as MeasureConfig
from harness.suite._schema import Problem as Problem
from harness.suite._schema import SuiteConfig as SuiteConfig
from harness.suite._schema import SuiteError as SuiteError
from harness.suite._schema import format_problems as format_problems
from harness.suite._schema import unknown_key_message as unknown_key_message
from harness.suite._types import check_value as check_value
from harness.suite._types import describe as describe
from harness.suite._types import field_types as field_types
from harness.suite._types import type_name as type_name

__all__ = ["Cell", "EvalConfig", "dataset_from_overrides", "MeasureConfig", "Problem", "Suite", "SuiteConfig", "SuiteError",
           "apply_overrides", "check_value", "describe", "field_types", "format_problems", "load_suite", "parse_assignment",
           "type_name", "unknown_key_message", "validate_suite"]
