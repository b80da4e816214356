"""The README's figures against the committed JSON they come from (benchmarks/figures.py), the mechanism itself on
small Markdown files with known answers, the generated index, and provenance in every committed result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures import check_markdown, evaluate, matches  # noqa: E402
from figures_index import INDEX, index_markdown  # noqa: E402

from paumer_edge.core.provenance import Provenance, missing_fields  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def test_every_readme_figure_matches_its_json_and_none_is_unsourced() -> None:
    figures, problems = check_markdown(ROOT / "README.md")
    assert problems == []
    assert len(figures) >= 150  # the tables and the prose figures of every results section
    sources = {f.source for f in figures}
    assert {"benchmarks/results/bench_sample.json", "benchmarks/results/sample_eval.json",
            "benchmarks/results/serve_load.json", "benchmarks/results/view_overhead.json",
            "benchmarks/results/output_check_cost.json", "benchmarks/results/soak.json"} <= sources


def test_the_index_is_the_one_the_marks_give() -> None:
    figures, _ = check_markdown(ROOT / "README.md")
    assert INDEX.read_text() == index_markdown(ROOT / "README.md", figures), \
        "benchmarks/results/README.md is stale: run python benchmarks/figures_index.py"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_committed_result_carries_its_provenance(path: Path) -> None:
    data = json.loads(path.read_text())
    assert missing_fields(data.get("provenance") if isinstance(data, dict) else None) == []


def result(tmp_path: Path, payload: dict, name: str = "r.json") -> str:
    payload = {**payload, "provenance": Provenance.start(argv=["python", "bench.py"]).finish()}
    (tmp_path / name).write_text(json.dumps(payload))
    return name


def check(tmp_path: Path, markdown: str) -> tuple[list, list[str]]:
    (tmp_path / "README.md").write_text(markdown)
    return check_markdown(tmp_path / "README.md", root=tmp_path)


ROWS = {"results": [{"name": "budget 1", "ms_p50": 32.49, "miou": 0.658574, "counts": [512, 330, 212, 137]},
                    {"name": "budget 0.5", "ms_p50": 17.15, "miou": 0.6546, "counts": [512, 330, 212, 137]}]}
TABLE = """<!-- figures: {src}
row: results[name={{}}]
p50 ms: {{ms_p50}}
mIoU: 100 * {{miou}}
tokens: {{counts}}
-->
| setting | p50 ms | mIoU | tokens |
| --- | --- | --- | --- |
| budget 1 | 32.5 | **65.86** | 512/330/212/137 |
| budget 0.5 | {half} | 65.46 | 512/330/212/137 |
"""


def test_a_marked_table_matches_rounded_as_printed(tmp_path: Path) -> None:
    figures, problems = check(tmp_path, TABLE.format(src=result(tmp_path, ROWS), half="17.2"))
    assert problems == [] and len(figures) == 6


def test_one_wrong_cell_fails_and_says_which(tmp_path: Path) -> None:
    _, problems = check(tmp_path, TABLE.format(src=result(tmp_path, ROWS), half="17.3"))
    assert len(problems) == 1 and "budget 0.5 / p50 ms" in problems[0] and "printed 17.3" in problems[0]


def test_an_unmarked_results_table_and_an_unsourced_column_fail(tmp_path: Path) -> None:
    _, problems = check(tmp_path, "| setting | p50 ms |\n| --- | --- |\n| budget 1 | 32.5 |\n")
    assert len(problems) == 1 and "without a figures mark" in problems[0]
    src = result(tmp_path, ROWS)
    _, problems = check(tmp_path, TABLE.format(src=src, half="17.2").replace("mIoU: 100 * {miou}\n", ""))
    assert len(problems) == 1 and "column 'mIoU' has figures (**65.86**)" in problems[0]  # the first stops the table


def test_prose_figures_need_a_mark_and_targets_say_so(tmp_path: Path) -> None:
    src = result(tmp_path, ROWS)
    _, problems = check(tmp_path, f"<!-- figures: {src} -->\nIt ran at 32.5 ms and 1.87x.\n")
    assert [p.split("'")[1] for p in problems] == ["32.5 ms", "1.87x"]
    text = (f"<!-- figures: {src} -->\nIt ran at 32.5 ms<!-- = {{results[name=budget 1].ms_p50}} --> "
            "(target < 40 ms<!-- given: the target -->), "
            "spread 17-32 ms<!-- = [min({results[*].ms_p50}), max({results[*].ms_p50})] -->.\n")
    figures, problems = check(tmp_path, text)
    assert problems == [] and [f.printed for f in figures] == ["32.5 ms", "17-32 ms"]


def test_a_source_without_provenance_fails(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps(ROWS))
    _, problems = check(tmp_path, TABLE.format(src="old.json", half="17.2"))
    assert len(problems) == 1 and "old.json lacks provenance" in problems[0]


def test_key_paths_and_expressions() -> None:
    data = {"servers": [{"server": "a", "ms": 1.0}, {"server": "b", "ms": 3.0}, {"server": "a", "ms": 2.0}],
            "q": [1.05, 1.25]}
    assert evaluate("{servers[?server=a].ms}", data).tolist() == [1.0, 2.0]
    assert evaluate("[min({servers[*].ms}), max({servers[*].ms})]", data).tolist() == [1.0, 3.0]
    assert evaluate("100 * ({servers[1].ms} - median({servers[*].ms}))", data).tolist() == [100.0]
    assert evaluate("{q}", data).tolist() == [1.05, 1.25]
    dotted = {"results": [{"kept_0.5": 0.9, "per_0.25": {"stage1": 0.8}}], "a": {"b": 1.0}, "a.b": 2.0}
    assert evaluate("{results[0].kept_0.5}", dotted).tolist() == [0.9]  # a key that holds a dot
    assert evaluate("{results[*].per_0.25.stage1}", dotted).tolist() == [0.8]
    assert evaluate("{a.b}", dotted).tolist() == [1.0]  # the plain nested key first
    assert matches("65.86", 0.658574 * 100) and not matches("65.86", 0.65844 * 100)
    assert matches("1,000", 1000.4) and matches("2", 2.4) and not matches("2", 2.6)
