"""The figures of the model card's hand-written notes against the generated results pages.

``src/kcross_metric/train/model_card_notes.md`` is typed by hand; the pages it quotes
(``docs/results-*.md``) are written by ``benchmarks/``. Each figure in the notes is followed,
without a line break, by an HTML comment saying where it comes from (``model_card.card_notes``
removes the comments from the card)::

    0.752 / 0.739<!-- src segmenter row=glioma/flair,glioma/t2 col="pooled Dice" -->

* ``src PAGE[#SECTION]``: the table of ``docs/results-PAGE.md`` that holds the row and column;
  SECTION, the beginning of the heading above a table, picks one where several would. Words are
  split as in a shell: quote values with spaces (``ladders#"Lesion rules"``, ``col="previous v2"``).
* ``row=``: a row by its leading cells, ``/``-separated (markdown emphasis dropped); several rows
  comma-separated; ``*`` every row, ``except=`` rows to leave out of ``*``.
* ``col=``: a column by its header, or by a part of exactly one header; several comma-separated.
* The figure before the comment is one number, an ``a / b / c`` list (one per cell: rows in the
  order given, then columns) or an ``a-b`` range. One number for several cells must match each.
* ``agg=``: compare to the cells' ``min``, ``max``, ``sum`` or ``range`` (min-max) instead, or
  ``atleast``: every cell is at or above the figure.
* ``target=T``: the figure is how far the cell falls short of ``T`` (a missed target).
* ``text="..."`` instead of row and column: a phrase of the page holding the figure.
* ``<!-- unchecked: REASON -->``: a figure no results page holds (wall times, a target, a page
  that has been regenerated since), saying why.

A figure matches a cell when it has no more decimals than the cell and equals the cell rounded to
its own decimals (either way at an exact half): ``0.99`` quotes ``0.988``; ``0.975`` cannot quote
``0.97``. Every number with a decimal point in the notes' text (outside code spans and comments;
licence versions as in "CC BY 3.0" aside) must carry a marker; integers (counts, epochs, issue
numbers) need none and are checked when they carry one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from kcross_metric.train.model_card import card_notes, card_section

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "src" / "kcross_metric" / "train" / "model_card_notes.md"
CARD = ROOT / "src" / "kcross_metric" / "weights" / "kcross.md"

_NUMBER = r"\d+(?:\.\d+)?"
# the figure a marker follows: a range, or one number or a /-separated list, at the end of the text
_FIGURE = re.compile(rf"(?<![\w.])(?:{_NUMBER}\s*-\s*{_NUMBER}|{_NUMBER}(?:\s*/\s*{_NUMBER})*)[ \t]*\Z")
_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")
_LICENCE_VERSION = re.compile(r"CC BY(?:-SA)? \Z")
_AGGREGATES: dict[str, Callable[[list[Decimal]], Decimal]] = {
    "min": min,
    "max": max,
    "sum": lambda values: sum(values, Decimal(0)),
}


@dataclass
class Table:
    section: str
    header: list[str]
    rows: list[list[str]]


def _cell(text: str) -> str:
    return " ".join(text.replace("\\|", "|").replace("*", "").split())


def parse_tables(markdown: str) -> list[Table]:
    """The pipe tables of a page, each with the heading it sits under."""
    tables: list[Table] = []
    section = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            block = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            split = [[_cell(c) for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in [line, *block]]
            tables.append(Table(section, split[0], split[1:]))
            continue
        i += 1
    return tables


def _decimal(cell: str) -> Decimal:
    match = re.match(rf"-?{_NUMBER}", cell)
    if match is None:
        raise LookupError(f"cell {cell!r} holds no number")
    return Decimal(match.group(0))


def _exponent(number: Decimal) -> int:
    return int(number.as_tuple().exponent)  # -2 for 0.75


def matches(figure: Decimal, value: Decimal) -> bool:
    """``figure`` is ``value`` written with at most as many decimals as ``value`` has."""
    if _exponent(figure) < _exponent(value):
        return False
    return abs(figure - value) <= Decimal(5).scaleb(_exponent(figure) - 1)


def _column(table: Table, name: str) -> int:
    if name in table.header:
        return table.header.index(name)
    found = [i for i, h in enumerate(table.header) if name in h]
    if len(found) != 1:
        raise LookupError(f"column {name!r}: {len(found)} headers contain it in {table.header}")
    return found[0]


def _row(table: Table, key: str) -> list[str]:
    parts = [_cell(p) for p in key.split("/")]
    found = [r for r in table.rows if r[: len(parts)] == parts]
    if len(found) != 1:
        raise LookupError(f"row {key!r}: {len(found)} rows match")
    return found[0]


def _cells(table: Table, rows: str, cols: str, excepted: str | None) -> list[str]:
    col_index = [_column(table, c) for c in cols.split(",")]
    if rows == "*":
        dropped = [id(_row(table, k)) for k in excepted.split(",")] if excepted else []
        chosen = [r for r in table.rows if id(r) not in dropped]
    else:
        if excepted:
            raise LookupError("except= goes with row=*")
        chosen = [_row(table, k) for k in rows.split(",")]
    return [r[i] for r in chosen for i in col_index]


def _numbers(figure: str) -> list[Decimal]:
    return [Decimal(n) for n in re.findall(_NUMBER, figure)]


def _show(values: list[Decimal]) -> str:
    return " / ".join(map(str, values))


class Mismatch(Exception):
    """A figure differs from its source."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise Mismatch(message)


def check_marker(figure: str, marker: str, read_page: Callable[[str], str]) -> None:
    """Raise ``LookupError`` (the marker does not resolve) or ``Mismatch`` (the figure differs)."""
    words = shlex.split(marker)
    if not words or words[0] != "src" or len(words) < 2:
        raise LookupError("a marker is `src PAGE[#SECTION] ...` or `unchecked: REASON`")
    page, _, section = words[1].partition("#")
    options = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    unknown = set(options) - {"row", "col", "except", "agg", "target", "text"}
    if unknown or len(options) != len(words) - 2:
        raise LookupError(f"unknown words in marker: {words[2:]}")
    text = read_page(page)
    if "text" in options:
        phrase = options.pop("text")
        if options:
            raise LookupError("text= goes alone")
        if phrase not in text:
            raise LookupError(f"page {page} has no phrase {phrase!r}")
        _expect(_numbers(figure)[0] in _numbers(phrase), f"{figure} is not in {phrase!r}")
        return
    if "row" not in options or "col" not in options:
        raise LookupError("a table marker needs row= and col=")
    candidates = []
    errors = []
    for table in parse_tables(text):
        if not table.section.startswith(section):
            continue
        try:
            candidates.append(_cells(table, options["row"], options["col"], options.get("except")))
        except LookupError as exc:
            errors.append(f"[{table.section[:40]}] {exc}")
    if len(candidates) != 1:
        raise LookupError(f"{len(candidates)} tables of {page}#{section} match (elsewhere: {errors})")
    values = [_decimal(c) for c in candidates[0]]
    if "target" in options:
        values = [Decimal(options["target"]) - v for v in values]
    numbers = _numbers(figure)
    agg = options.get("agg")
    if ("-" in figure) != (agg == "range"):
        raise LookupError(f"an a-b figure goes with agg=range and only there: {figure!r}, agg={agg}")
    if agg == "range":
        got = [min(values), max(values)]
        _expect(all(map(matches, numbers, got)), f"{figure} vs {_show(got)}")
    elif agg == "atleast":
        _expect(len(numbers) == 1 and all(v >= numbers[0] for v in values), f"{figure} vs {_show(values)}")
    elif agg in _AGGREGATES:
        got = [_AGGREGATES[agg](values)]
        _expect(len(numbers) == 1 and matches(numbers[0], got[0]), f"{figure} vs {agg} {_show(got)} of {_show(values)}")
    elif agg is not None:
        raise LookupError(f"unknown agg={agg}")
    elif len(numbers) == 1:
        _expect(all(matches(numbers[0], v) for v in values), f"{figure} vs {_show(values)}")
    else:
        _expect(len(numbers) == len(values), f"{len(numbers)} figures for {len(values)} cells")
        _expect(all(map(matches, numbers, values)), f"{figure} vs {_show(values)}")


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def _masked(notes: str) -> str:
    """The notes with comments and code spans blanked out, same length."""
    return re.sub(r"`[^`\n]*`", _blank, _COMMENT.sub(_blank, notes))


def check_notes(notes: str, read_page: Callable[[str], str]) -> tuple[list[str], int]:
    """Every problem found (one line each), and how many markers were checked against a page."""
    problems: list[str] = []
    covered: list[tuple[int, int]] = []
    checked = 0
    previous_end = 0
    for comment in _COMMENT.finditer(notes):
        body = " ".join(comment.group(1).split())
        figure = _FIGURE.search(notes, previous_end, comment.start())
        previous_end = comment.end()
        where = "line {}".format(notes.count("\n", 0, comment.start()) + 1)
        if figure is None:
            if body.startswith(("src ", "unchecked")):
                problems.append(f"{where}: marker <!-- {body} --> follows no number")
            continue  # a comment for the reader
        covered.append(figure.span())
        if body.startswith("unchecked:") and body[len("unchecked:"):].strip():
            continue
        try:
            check_marker(figure.group(0).strip(), body, read_page)
            checked += 1
        except (LookupError, ValueError, OSError) as exc:
            problems.append(f"{where}: {figure.group(0).strip()} <!-- {body} -->: does not resolve: {exc}")
        except Mismatch as exc:
            problems.append(f"{where}: {figure.group(0).strip()} <!-- {body} -->: differs from the page: {exc}")
    masked = _masked(notes)
    for number in _DECIMAL.finditer(masked):
        if _LICENCE_VERSION.search(masked, 0, number.start()):
            continue
        if not any(start <= number.start() < end for start, end in covered):
            line = notes.count("\n", 0, number.start()) + 1
            problems.append(f"line {line}: {number.group(0)} has no marker")
    return problems, checked


def read_results_page(name: str) -> str:
    return (ROOT / "docs" / f"results-{name}.md").read_text(encoding="utf-8")


def test_notes_quote_the_results_pages() -> None:
    notes = NOTES.read_text(encoding="utf-8")
    problems, checked = check_notes(notes, read_results_page)
    assert not problems, "model_card_notes.md:\n" + "\n".join(problems)
    assert checked == notes.count("<!-- src ")


def test_card_holds_the_notes() -> None:
    """The shipped card's notes section is the notes file as model_card.py writes it: after an edit
    of the notes, copy it (``card_notes``) into ``weights/kcross.md`` or regenerate the card."""
    card = CARD.read_text(encoding="utf-8")
    expected = "## Findings and limitations\n\n" + card_notes(NOTES.read_text(encoding="utf-8")) + "\n"
    assert card_section(card, "Findings and limitations") == expected
    assert "<!--" not in expected


# The checker itself, on a made-up page: each marker below must be caught.
_PAGE = """# Dice

| lesions | contrast | pooled Dice | pooled Dice, degraded input |
|---|---|---|---|
| glioma | flair | 0.752 | 0.733 |
| glioma | t2 | 0.739 [0.70, 0.78] | 0.721 |

Run on 12 subjects (960 consecutive pairs).

## Lesion rules

| lesion edit | pairs | K-CROSS shipped (v2b) | K-CROSS first (v1) |
|---|---|---|---|
| lesion_erase | 30 | 1.000 | 0.80 |
| lesion_move *(unseen)* | 30 | 1.000 | 0.97 |
| **all** | 60 | 1.000 | 0.885 |

## Ladders

| family | pairs | K-CROSS shipped (v2b) | \\|v\\| |
|---|---|---|---|
| blur | 80 | 0.988 | 0.5 |
"""


def _check(text: str) -> list[str]:
    return check_notes(text, lambda name: {"p": _PAGE}[name])[0]


@pytest.mark.parametrize("text", [
    'Dice 0.752<!-- src p row=glioma/flair col="pooled Dice" -->.',
    'Dice 0.75 / 0.74<!-- src p row=glioma/flair,glioma/t2 col="pooled Dice" -->.',
    'Degraded 0.73<!-- src p row=glioma/flair col=degraded -->.',
    ('Every edit 1.00<!-- src p#Lesion row=* except=all col=shipped -->, first 0.80-0.97<!-- src p#Lesion row=* '
     'except=all col=first agg=range -->, 60<!-- src p#Lesion row=lesion_erase,"lesion_move (unseen)" col=pairs '
     'agg=sum -->.'),
    ('Missed by 0.05<!-- src p row=glioma/flair col="pooled Dice" target=0.80 -->; all at or above 0.98<!-- src '
     'p#Ladders row=* col=shipped agg=atleast -->; |v| 0.5<!-- src p row=blur col=|v| -->.'),
    'On 960<!-- src p text="(960 consecutive pairs)" --> pairs, CC BY 3.0, `0.1234`, 6.7<!-- unchecked: a log -->.',
    '<!-- a comment for the reader, not a marker -->\nNo figures here; 12 subjects.',
])
def test_checker_accepts(text: str) -> None:
    assert _check(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    ('Dice 0.753<!-- src p row=glioma/flair col="pooled Dice" -->.', "differs"),
    ('Dice 0.7520<!-- src p row=glioma/flair col="pooled Dice" -->.', "differs"),  # more decimals than the page
    ('Dice 0.76<!-- src p row=glioma/flair col="pooled Dice" -->.', "differs"),
    ('Dice 0.74 / 0.75<!-- src p row=glioma/flair,glioma/t2 col="pooled Dice" -->.', "differs"),
    ('Dice 0.752<!-- src p row=glioma/flair col="pooled Dice" --> and 0.739 on T2.', "0.739 has no marker"),
    ('Dice 0.752 <!-- a comment -->.', "does not resolve"),  # a comment after a number is a marker
    ('Dice 0.752<!-- unchecked: -->.', "0.752 <!-- unchecked: -->"),  # a reason is required
    ('Dice 0.752<!-- src p row=glioma/flair col=Dice -->.', "does not resolve"),  # two headers hold "Dice"
    ('Dice 0.752<!-- src p row=glioma col="pooled Dice" -->.', "does not resolve"),  # two glioma rows
    ('Dice 0.752<!-- src p row=glioma/t1 col="pooled Dice" -->.', "does not resolve"),
    ('Dice 0.752<!-- src q row=glioma/flair col="pooled Dice" -->.', "does not resolve"),
    ('Dice 0.752<!-- src p row=glioma/flair column="pooled Dice" -->.', "does not resolve"),
    ('Edits 1.00<!-- src p row=* col=shipped -->.', "does not resolve"),  # in two tables: give the section
    ('Edits 1.00<!-- src p#Lesion row=* except=none col=shipped -->.', "does not resolve"),
    ('First 0.80-0.96<!-- src p#Lesion row=* except=all col=first agg=range -->.', "differs"),
    ('At or above 0.99<!-- src p#Ladders row=* col=shipped agg=atleast -->.', "differs"),
    ('First 0.80-0.97<!-- src p#Lesion row=* except=all col=first -->.', "does not resolve"),  # agg=range missing
    ('On 961<!-- src p text="(960 consecutive pairs)" --> pairs.', "differs"),
    ('On 960<!-- src p text="(960 pairs)" --> pairs.', "does not resolve"),
    ('Dice <!-- src p row=glioma/flair col="pooled Dice" -->.', "follows no number"),
])
def test_checker_catches(text: str, expected: str) -> None:
    problems = _check(text)
    assert len(problems) == 1 and expected in problems[0], problems
