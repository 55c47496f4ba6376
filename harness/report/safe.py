"""Record text made safe for each report format (torch-free).

Any text in a record (labels, method parameters, error types and messages, dataset and backbone
names) is untrusted: a report must neither break its own layout nor pass on markup, escape
sequences or spreadsheet formulas. Every text cell, title, note and error message of the text
formats and the HTML page goes through one of these functions; ``json`` keeps text exactly.
"""
from __future__ import annotations

import html
import re
import typing as tp

# terminal escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences;
# C1 controls written as single code points (U+009B is a one-character CSI)
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?"
                              r"|\x9b[0-?]*[ -/]*[@-~]?|\x9d[^\x07\x1b\x9c]*(?:\x07|\x9c)?")
# what is left after the sequences: C0 (but newline and tab), DEL, C1, and the bidirectional overrides
# that can make text display in another order than it reads ("Trojan source")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"[\n\t]+")


def plain(text: tp.Any, one_line: bool = True) -> str:
    """``text`` without terminal escape sequences and control characters; ``one_line``: newlines and tabs
    become one space (a table cell), else they are kept (an error message in a block)."""
    text = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(text)))
    return _SPACE.sub(" ", text) if one_line else text


def term(text: tp.Any) -> str:
    """A terminal table cell or line."""
    return plain(text)


_MD_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def markdown(text: tp.Any) -> str:
    """A Markdown (GitHub) table cell or heading: one line, ``|`` and backticks escaped, HTML as entities
    (so no tag, e.g. ``<script>`` or ``<img onerror>``, reaches a renderer)."""
    text = "".join(_MD_ESCAPES.get(ch, ch) for ch in plain(text))
    # no [text](javascript:...) link and no ![image](http://...) (a tracking pixel) can form in a cell
    return text.replace("](", "]\\(").replace("![", "!\\[")


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "Δ": r"$\Delta$"}


def latex(text: tp.Any) -> str:
    """LaTeX text (captions, notes, cells): specials escaped, control characters removed, one line (a blank
    line would end the paragraph inside a table)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in plain(text))


def html_text(text: tp.Any, one_line: bool = True) -> str:
    """HTML element text or attribute value: escaped (quotes too) after removing control characters."""
    return html.escape(plain(text, one_line), quote=True)


def mpl(text: tp.Any) -> str:
    """Text for a matplotlib title or legend: one line, ``$`` escaped (mathtext would parse it, and a bad
    expression stops the plot)."""
    return plain(text).replace("$", r"\$")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: tp.Any) -> tp.Any:
    """A CSV field that a spreadsheet will not run: control characters and escape sequences removed, then text
    starting (after spaces) with ``= + - @``, tab or carriage return gets a leading ``'`` (OWASP's advice against
    CSV injection). Numbers (negative ones too) stay numbers."""
    if isinstance(value, str):
        value = plain(value)  # control characters first: "\x08=cmd" must not hide the formula from the guard
        if value.lstrip(" ").startswith(_FORMULA_START):
            return "'" + value
    return value
