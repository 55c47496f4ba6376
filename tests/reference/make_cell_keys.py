"""Regenerate ``tests/reference/cell_keys.json``: every cell's key, label and config, as a checkout computes them.

    python tests/reference/make_cell_keys.py --checkout /path/to/a/checkout [--out PATH]

Run it with ``--checkout`` naming a checkout of the code whose keys must stay (the golden was made from
main at 11a2ad2, before ``CellSpec`` owned the key): its ``harness`` package is imported from there, in a
fresh process, with every ``${VAR}`` of the shipped suites set to ``/nonexistent/<VAR>`` and the decoder's
identity fixed (``decord 0.6.0``: the key names the installed decoder build). Only suites whose cells name
no file inside the checkout are kept (a path in the config, hence in the key, would tie the golden to one
folder). Not run by the tests, which only load the JSON (``tests/test_cell_spec.py``).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DUMP = r"""
import glob, json, os, sys
import harness.data.decode as decode
decode.decoder_identity = lambda name: "decord 0.6.0" if name == "decord" else name
from harness.suite import load_suite
out = {}
for path in sorted(glob.glob("suites/*.yaml")):
    try:
        cells = load_suite(path).cells()
    except Exception:  # a suite that does not load without its data: not part of the golden
        continue
    rows = [[c.key, c.label, c.config()] for c in cells]
    if os.getcwd() not in json.dumps(rows):
        out[os.path.basename(path)] = rows
json.dump(out, sys.stdout)
"""


def one_cell_a_line(golden: dict) -> str:
    """The golden as JSON with one cell (key, label, config) a line, suites in name order."""
    parts = []
    for name in sorted(golden):
        rows = ",\n".join(json.dumps(row, sort_keys=True) for row in golden[name])
        parts.append(f"{json.dumps(name)}: [\n{rows}\n]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def suite_variables(root: str) -> list:
    import re

    names = set()
    for name in os.listdir(os.path.join(root, "suites")):
        if name.endswith(".yaml"):
            with open(os.path.join(root, "suites", name)) as f:
                names |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", f.read()))
    return sorted(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", required=True)
    parser.add_argument("--out", default=os.path.join(HERE, "cell_keys.json"))
    args = parser.parse_args()
    root = os.path.abspath(args.checkout)
    env = {**os.environ, "PYTHONPATH": root, **{v: f"/nonexistent/{v}" for v in suite_variables(root)}}
    out = subprocess.run([sys.executable, "-c", DUMP], cwd=root, env=env, check=True, capture_output=True, text=True)
    with open(args.out, "w") as f:
        f.write(one_cell_a_line(json.loads(out.stdout)))
    print(f"wrote {args.out}: {sum(len(v) for v in json.loads(out.stdout).values())} cells")


if __name__ == "__main__":
    main()
