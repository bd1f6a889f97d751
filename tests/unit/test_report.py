"""The claims page and the index: the index opens with the claims table, verdicts are coloured and explained, and
small numbers are printed in scientific notation rather than rounded to 0."""

import pandas as pd

from harmonic import claims as C
from harmonic.report import claims_page, index_page


def result_table():
    claim = C.Claim(
        id="T-EV",
        paper="baek",
        where="Fig. 3a",
        words="harmonic EV is higher",
        kind="compare",
        family="toy",
        metric="ev",
        select={},
        treatment={"cell.head": "h"},
        control={"cell.head": "b"},
        paper_number="59.1 % vs 39.4 %",
    )
    rows = []
    for s in range(6):
        rows += [
            {
                "status": "ok",
                "family": "toy",
                "cell.setting": "faithful",
                "cell.head": "b",
                "cell.seed": s,
                "ev": 0.4 + 0.01 * s,
            },
            {
                "status": "ok",
                "family": "toy",
                "cell.setting": "faithful",
                "cell.head": "h",
                "cell.seed": s,
                "ev": 0.4 + 0.01 * s + 3e-7 * (s + 1),
            },
        ]
    return claim, C.evaluate([claim], [("embedded", "t.parquet", pd.DataFrame(rows))])


def test_claims_page_shows_verdict_statistic_and_small_values_in_scientific_notation():
    claim, result = result_table()
    page = claims_page(result, [])
    assert result.iloc[0]["verdict"] == "reproduced"
    assert "reproduced" in page and "59.1 % vs 39.4 %" in page
    assert "1.05e-06" in page  # the mean difference, not "0.0"


def test_index_opens_with_the_claims_then_studies(tmp_path):
    claim, result = result_table()
    study = C.Study(
        id="s",
        paper="baek",
        figure="Fig. 3a",
        family="toy",
        title="EV study",
        notebooks=("toy_ev",),
        claims=("T-EV",),
    )
    figures = tmp_path / "figures" / "toy_ev"
    figures.mkdir(parents=True)
    (figures / "ev.png").write_bytes(b"png")
    page = index_page(
        tmp_path / "index.html",
        result,
        [study],
        [claim],
        [tmp_path / "notebooks/toy_ev.html"],
        [figures],
        [tmp_path / "tables/toy.csv"],
        tmp_path / "claims.html",
    )
    assert page.index("Which claims hold") < page.index("Studies") < page.index("Every notebook")
    assert 'src="figures/toy_ev/ev.png"' in page and "EV study" in page and "claims.html" in page


def test_summary_has_one_column_per_scale_and_setting_and_not_run_fills_its_scale():
    claim, result = result_table()
    missing = C.Claim(id="T-NO", paper="baek", where="w", words="w", kind="not_runnable", reason="no data here")
    result = C.evaluate([claim, missing], [("embedded", "t", result_table_rows())], scales=["embedded", "paper"])
    page = claims_page(result, [])
    header = page[page.index("<table>") : page.index("</tr>")]
    assert header.count("<th>") == 3 + 2  # claim, group, paper says; embedded / faithful; paper / -
    assert "embedded / faithful" in header and "paper / -" in header
    no_row = page[page.index("<b>T-NO</b>") :]
    no_row = no_row[: no_row.index("</tr>")]
    assert no_row.count("not run") == 2


def result_table_rows():
    rows = []
    for s in range(6):
        for head, ev in (("b", 0.4), ("h", 0.6)):
            rows.append(
                {
                    "status": "ok",
                    "family": "toy",
                    "cell.setting": "faithful",
                    "cell.head": head,
                    "cell.seed": s,
                    "ev": ev + 0.01 * s,
                }
            )
    return pd.DataFrame(rows)


def test_a_notebook_leads_with_the_verdicts_of_its_studies(tmp_path):
    from harmonic.report import notebook_findings

    rows = []
    for s in range(5):
        for head, ev in (("baseline", 0.3), ("euclidean", 0.8)):
            rows.append(
                {
                    "status": "ok",
                    "family": "toy",
                    "cell.setting": "faithful",
                    "cell.study": "grid",
                    "cell.model": "mlp",
                    "cell.task": "lattice",
                    "cell.head": head,
                    "cell.seed": s,
                    "ev_pc1_pc2": ev + 0.01 * s,
                }
            )
    path = tmp_path / "toy.parquet"
    pd.DataFrame(rows).to_parquet(path)
    text = notebook_findings(str(path), "toy_ev").data
    assert "**B-EV** (faithful, task=lattice): **reproduced**" in text
    assert "B-GROK" not in text  # toy_grokking's claim, not this notebook's
    empty = notebook_findings(str(tmp_path / "missing.parquet"), "toy_ev").data
    assert "not run" in empty


def test_summary_columns_are_grouped_by_scale_then_setting():
    claim, _ = result_table()
    corrected = result_table_rows().assign(**{"cell.setting": "corrected"})
    tables = [
        ("embedded", "a", result_table_rows()),
        ("paper", "b", result_table_rows()),
        ("embedded", "c", corrected),
    ]
    page = claims_page(C.evaluate([claim], tables), [])
    header = page[page.index("<table>") : page.index("</tr>")]
    order = [header.index(h) for h in ("embedded / faithful", "embedded / corrected", "paper / faithful")]
    assert order == sorted(order)


def test_markdown_summary_lists_each_groups_verdict_per_scale_and_setting():
    """docs/results-claims.md opens with one line per claim: groups under their verdict, a setting that ran only
    elsewhere at that scale is "not run", and the full rows follow."""
    from dataclasses import replace

    from harmonic.report import claims_markdown

    claim, _ = result_table()
    by_task = replace(claim, id="T-BY", by=("cell.task",))
    up, down = result_table_rows().assign(**{"cell.task": "up"}), result_table_rows().assign(**{"cell.task": "down"})
    down.loc[down["cell.head"] == "h", "ev"] -= 0.5  # the harmonic arm is worse on this task
    faithful = pd.concat([up, down], ignore_index=True)
    corrected = up.assign(**{"cell.setting": "corrected"})
    tables = [("paper", "a", faithful), ("embedded", "b", corrected)]
    text = claims_markdown(C.evaluate([claim, by_task], tables, scales=["embedded", "paper"]), "cmd")
    glance = text[text.index("## At a glance") : text.index("## Every evaluation")]
    header = next(line for line in glance.splitlines() if line.startswith("| claim"))
    assert header == "| claim | paper says | embedded / corrected | paper / faithful |"
    by_line = next(line for line in glance.splitlines() if line.startswith("| **T-BY**"))
    assert by_line.endswith("| reproduced: up | not reproduced: down; reproduced: up |")
    assert "| T-BY | paper | faithful | task=down | not reproduced |" in text[text.index("## Every evaluation") :]

    # at one scale both settings ran, but only faithful cells have task "down": that claim is "not run" under corrected
    only_down = replace(claim, id="T-DOWN", select={"cell.task": "down"})
    both = [("paper", "a", faithful), ("paper", "c", corrected)]
    text = claims_markdown(C.evaluate([claim, only_down], both), "cmd")
    assert "| claim | paper says | paper / faithful | paper / corrected |" in text
    line = next(row for row in text.splitlines() if row.startswith("| **T-DOWN**"))
    assert line.endswith("| not reproduced | not run |")
