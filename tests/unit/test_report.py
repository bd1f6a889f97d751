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
    for s in range(5):
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
    assert "9.00e-07" in page  # the mean difference, not "0.0"


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
