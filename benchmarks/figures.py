"""Check every figure a Markdown file quotes against the committed JSON it comes from (the README's claims test).

    python benchmarks/figures.py [README.md]        # one line per figure; exit 1 if any is off or unsourced

Marks are HTML comments, invisible when the Markdown is rendered:

    <!-- figures: benchmarks/results/bench_sample.json
    row: results[name={}]
    alias: PyTorch, budget {} = pytorch {}
    p50 ms: {ms_p50}
    speed-up (paired): {speedup_paired}
    mIoU: 100 * {miou}
    -->

names the source of what follows (until the next such mark). When a table follows it, `row:` says which JSON
object a row is (`{}` is the row's first cell, after any `alias:`; without `row:`, the whole JSON), and each
`COLUMN: EXPR` line which value every number in that column is (`ROW | COLUMN: EXPR`: one row's cell, over the
whole JSON); a column
with numbers but no line, or a table with numbers but no mark, is an unsourced figure (a table of
non-measurements says `<!-- figures: none (why) -->`). In prose, `<!-- = EXPR -->` right after a figure checks
it: `budget 0.5 ran at 1.87x<!-- = {results[name=budget 0.5].speedup_paired} -->`; a number with a unit that is
not a measurement (a target, a setting, a limit) says so: `target < 2%<!-- given: a target -->`.

EXPR is arithmetic (+ - * /, min, max, median, mean, [a, b]) over `{key.path}` values of the source JSON. A key path
is dotted keys (a key that holds dots itself, `kept_0.5`, is found as one) with `[3]` (an index), `[*]` (every
element), `[field=value]` (the one element whose field prints as value) or `[?field=value]` (every such element).
A figure matches when its value, rounded as printed, is the JSON's: 65.86 matches 0.658574 * 100; a list
(512/330/212/137) or range (80-129%) matches element by element.
Every source JSON must carry its provenance (`paumer_edge.core.provenance`).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import operator
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge.core.provenance import missing_fields

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
COMMENT = re.compile(r"<!--(.*?)-->", re.S)
JOIN = r"(?:\s*->\s*|\s*-\s*|\s*/\s*|\s+to\s+)"  # 1.0-1.2, 512/330, 149.4 -> 149.6, 2 to 4
FIGURE_BEFORE = re.compile(rf"{NUMBER}(?:{JOIN}{NUMBER})*[\s*%x)]*(?:[A-Za-z/]+)?[\s*)]*$")
# in prose, a number with one of these units is a measured figure: it needs a mark
PROSE_FIGURE = re.compile(rf"{NUMBER}\s?(?:%|x(?!\w)|ms\b|FPS\b|MiB\b|mIoU\b|points\b)")


class FigureError(ValueError):
    """A figure that does not match its source, or has none, or a mark that cannot be read."""


@dataclass
class Figure:
    line: int
    printed: str
    expected: list[float]
    source: str
    expr: str


def load_json(path: Path, cache: dict[Path, Any]) -> Any:
    if path not in cache:
        if not path.is_file():
            raise FigureError(f"source '{path}' does not exist")
        cache[path] = json.loads(path.read_text())
    return cache[path]


# ---- key paths and expressions ---------------------------------------------------------------------------------
SEGMENT = re.compile(r"([^.\[\]]*)((?:\[[^\]]*\])*)")


def _matches(value: Any, text: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(text)
        except ValueError:
            return False
    return str(value) == text


def _select(items: Any, selector: str, path: str) -> Any:
    if not isinstance(items, list):
        raise FigureError(f"'{path}': [{selector}] applies to a list, found {type(items).__name__}")
    if selector == "*":
        return items
    if selector.startswith("?"):  # every element whose field prints as the value
        field, _, want = selector[1:].partition("=")
        return [x for x in items if isinstance(x, dict) and field in x and _matches(x[field], want.strip())]
    if re.fullmatch(r"-?\d+", selector):
        return items[int(selector)]
    field, _, want = selector.partition("=")
    found = [x for x in items if isinstance(x, dict) and field in x and _matches(x[field], want.strip())]
    if len(found) != 1:
        raise FigureError(f"'{path}': [{selector}] matches {len(found)} elements, not one")
    return found[0]


def resolve(data: Any, path: str) -> Any:
    """The value at a key path (see the module docstring); `[*]` maps the rest of the path over a list."""
    parts = [p for p in SEGMENT.findall(path) if p != ("", "")]
    value = data
    i = 0
    while i < len(parts):
        key, brackets = parts[i]
        if key:
            if not isinstance(value, dict):
                raise FigureError(f"'{path}': no key '{key}'")
            if key not in value:  # a key that holds dots itself ("kept_0.5"): the shortest run of segments that is one
                j = i
                while key not in value and j + 1 < len(parts) and not parts[j][1]:
                    j += 1
                    key += "." + parts[j][0]
                if key not in value:
                    raise FigureError(f"'{path}': no key '{parts[i][0]}'")
                i, brackets = j, parts[j][1]
            value = value[key]
        for selector in re.findall(r"\[([^\]]*)\]", brackets):
            value = _select(value, selector.strip(), path)
            if selector.strip() == "*" or selector.strip().startswith("?"):
                rest = ".".join(k + b for k, b in parts[i + 1:])
                return [resolve(v, rest) if rest else v for v in value]
        i += 1
    return value


BINARY: dict[type, Callable[[Any, Any], Any]] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                                 ast.Mult: operator.mul, ast.Div: operator.truediv}
FUNCTIONS: dict[str, Callable[[Any], Any]] = {"min": np.min, "max": np.max, "median": np.median, "mean": np.mean}


def evaluate(expr: str, data: Any) -> np.ndarray:
    """The value of an expression over `{key.path}` references into `data`, as a flat float array."""
    refs: dict[str, Any] = {}

    def ref(m: re.Match[str]) -> str:
        name = f"_v{len(refs)}"
        refs[name] = np.asarray(resolve(data, m[1].strip()), dtype=float)
        return name

    code = re.sub(r"\{([^{}]*)\}", ref, expr)
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        raise FigureError(f"cannot read the expression '{expr}'") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in refs:
            return refs[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            return BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.List):
            return np.concatenate([np.ravel(ev(e)) for e in node.elts])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            return FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise FigureError(f"'{expr}': only numbers, {{key.path}} values, + - * /, [a, b] and "
                          f"{', '.join(FUNCTIONS)} are allowed")

    return np.ravel(np.asarray(ev(tree), dtype=float))


def numbers(text: str) -> list[str]:
    """The numbers printed in a piece of text (a table cell, a figure), in order."""
    return re.findall(NUMBER, text.replace("**", "").replace("`", ""))


def matches(printed: str, value: float) -> bool:
    """Whether `value`, rounded to as many decimals as `printed` shows, is `printed`."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    shown = float(printed.replace(",", ""))
    return math.isfinite(value) and abs(value - shown) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12


def compare(printed: list[str], expected: np.ndarray, where: str) -> None:
    if len(printed) != len(expected):
        raise FigureError(f"{where}: {len(printed)} figures printed ({'/'.join(printed)}) but the source gives "
                          f"{len(expected)} ({', '.join(f'{v:g}' for v in expected)})")
    wrong = [(p, v) for p, v in zip(printed, expected) if not matches(p, float(v))]
    if wrong:
        raise FigureError(f"{where}: " + "; ".join(f"printed {p}, the source gives {v:.6g}" for p, v in wrong))


# ---- the Markdown -----------------------------------------------------------------------------------------------
@dataclass
class Mark:
    source: str  # "" for `figures: none`
    row: str
    aliases: list[tuple[str, str]]
    columns: dict[str, str]


def parse_mark(body: str, line: int) -> Mark:
    lines = [x.strip() for x in body.strip().splitlines() if x.strip()]
    source = lines[0].split(":", 1)[1].strip()
    mark = Mark("" if source.startswith("none") else source, "", [], {})
    for text in lines[1:]:
        key, sep, value = text.partition(":")
        if not sep:
            raise FigureError(f"line {line}: '{text}' in a figures mark is not 'KEY: VALUE'")
        key, value = key.strip(), value.strip()
        if key == "row":
            mark.row = value
        elif key == "alias":
            readme, _, json_name = value.rpartition("=")
            mark.aliases.append((readme.strip(), json_name.strip()))
        else:
            mark.columns[key] = value
    return mark


def row_name(label: str, aliases: list[tuple[str, str]]) -> str:
    for readme, json_name in aliases:
        pattern = "^" + re.escape(readme).replace(r"\{\}", "(.+)") + "$"
        found = re.match(pattern, label)
        if found:
            return json_name.replace("{}", found[1]) if found.groups() else json_name
    return label


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_figures(table: list[tuple[int, str]], mark: Mark | None, data: Any) -> Iterator[Figure]:
    """Every number of a Markdown table (first column and header aside) against its mark's source."""
    header = [re.sub(r"[*`]", "", c) for c in cells(table[0][1])]
    for line, text in table[2:]:
        row = cells(text)
        for column, cell in zip(header[1:], row[1:]):
            printed = numbers(cell)
            if not printed:
                continue
            if mark is None:
                raise FigureError(f"line {line}: a results table without a figures mark (column '{column}': {cell})")
            if not mark.source:
                continue
            label = re.sub(r"[*`]", "", row[0])
            name = row_name(label, mark.aliases)
            own = mark.columns.get(f"{name} | {column}")  # one row's cell: over the whole JSON
            expr = own if own is not None else mark.columns.get(column)
            if expr is None:
                raise FigureError(f"line {line}: column '{column}' has figures ({cell}) but the mark gives no source")
            where = f"line {line}, {label} / {column}"
            try:
                obj = data if own is not None else resolve(data, mark.row.replace("{}", name))
                expected = evaluate(expr, obj)
            except FigureError as e:
                raise FigureError(f"{where}: {e}") from None
            compare(printed, expected, where)
            path = expr if own is not None else f"{mark.row.replace('{}', name)} -> {expr}"
            yield Figure(line, f"{label} / {column}: {cell}", expected.tolist(), mark.source, path)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the given spans replaced by spaces (offsets and line numbers kept)."""
    chars = list(text)
    for a, b in spans:
        chars[a:b] = [c if c == "\n" else " " for c in chars[a:b]]
    return "".join(chars)


def check_markdown(path: Path, root: Path = ROOT) -> tuple[list[Figure], list[str]]:
    """Every figure of a Markdown file against its source JSON: (figures that match, problems). A problem is a
    figure that differs from its source, a results table or prose figure without a source, or a bad mark."""
    text = path.read_text()
    code = [(m.start(), m.end()) for m in re.finditer(r"(?ms)^```.*?^```", text)]
    scan = _blank(text, code)  # code blocks hold commands, not figures
    line_of = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def line_at(offset: int) -> int:
        return int(np.searchsorted(line_of, offset, side="right"))

    figures: list[Figure] = []
    problems: list[str] = []
    covered: list[tuple[int, int]] = []  # prose figures that a mark checks
    cache: dict[Path, Any] = {}
    mark: Mark | None = None
    data: Any = None
    table_mark: Mark | None = None  # the mark standing right before the next table
    comments = list(COMMENT.finditer(scan))
    tables = list(re.finditer(r"(?m)^\|.*(?:\n\|.*)+", scan))
    for offset, kind, m in sorted([(c.start(), "comment", c) for c in comments]
                                  + [(t.start(), "table", t) for t in tables], key=lambda e: e[0]):
        line = line_at(offset)
        try:
            if kind == "comment" and m[1].strip().startswith("figures:"):
                mark, data = parse_mark(m[1], line), None
                data = load_json(root / mark.source, cache) if mark.source else None
                if mark.source:
                    gaps = missing_fields(data.get("provenance") if isinstance(data, dict) else None)
                    if gaps:
                        problems.append(f"line {line}: {mark.source} lacks provenance ({', '.join(gaps)}); re-run "
                                        "the command that makes it")
                table_mark = mark if scan[m.end():].lstrip().startswith("|") else None
            elif kind == "comment" and m[1].strip().startswith("given:"):  # a target, setting or limit
                before = FIGURE_BEFORE.search(scan[max(0, offset - 80):offset])
                if before is None:
                    raise FigureError(f"the mark '{m[0]}' does not follow a figure")
                covered.append((max(0, offset - 80) + before.start(), offset))
            elif kind == "comment" and m[1].strip().startswith("="):
                if mark is None or not mark.source:
                    raise FigureError("a figure mark before any `figures: SOURCE` mark")
                start = max(0, offset - 80)
                before = FIGURE_BEFORE.search(scan[start:offset])
                if before is None:
                    raise FigureError(f"the mark '{m[0]}' does not follow a figure")
                covered.append((start + before.start(), offset))
                expr = m[1].strip()[1:].strip()
                compare(numbers(before[0]), evaluate(expr, data), f"'{before[0].strip()}'")
                figures.append(Figure(line, before[0].strip(), evaluate(expr, data).tolist(), mark.source, expr))
            elif kind == "table":
                rows = [(line + i, t) for i, t in enumerate(m[0].splitlines())]
                this, table_mark = table_mark, None
                figures += list(table_figures(rows, this, data))
        except FigureError as e:
            problems.append(str(e) if str(e).startswith("line") else f"line {line}: {e}")
    prose = _blank(scan, [(m.start(), m.end()) for m in comments + tables]
                   + [(m.start(), m.end()) for m in re.finditer(r"`[^`\n]*`", scan)])
    for m in PROSE_FIGURE.finditer(prose):
        if not any(a <= m.start() < b for a, b in covered):
            problems.append(f"line {line_at(m.start())}: '{m[0]}' has no source: add <!-- = {{key.path}} --> after it "
                            "(under a `figures: SOURCE` mark), or remove it")
    return figures, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("markdown", nargs="?", default=str(ROOT / "README.md"))
    a = p.parse_args(argv)
    figures, problems = check_markdown(Path(a.markdown))
    for f in figures:
        print(f"line {f.line:>4}  {f.printed:<24} {f.source}: {f.expr}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{len(figures)} figures match their sources; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
