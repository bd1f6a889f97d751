"""Claim evaluation: synthetic tables whose answer is known give the known verdicts, and the shipped claims file is
well-formed (every study and claim the issue lists exists, selectors name real columns)."""

import math

import numpy as np
import pandas as pd
import pytest

from harmonic import claims as C


def toy_table(effect, n_seeds=8, setting="faithful", noise=0.01, metric="ev_pc1_pc2", seed=0):
    """A toy-family table: per seed, a baseline and a euclidean cell; euclidean = baseline + effect + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        base = 0.4 + rng.normal(0, 0.05)
        for head, value in (("baseline", base), ("euclidean", base + effect + rng.normal(0, noise))):
            rows.append(
                {
                    "status": "ok",
                    "family": "toy",
                    "cell.setting": setting,
                    "cell.study": "grid",
                    "cell.task": "modular_addition",
                    "cell.model": "mlp",
                    "cell.head": head,
                    "cell.seed": s,
                    metric: value,
                }
            )
    return pd.DataFrame(rows)


def ev_claim(**changes):
    values = dict(
        id="T-EV",
        paper="baek",
        where="test",
        words="harmonic EV is higher",
        kind="compare",
        family="toy",
        metric="ev_pc1_pc2",
        select={"cell.study": "grid"},
        treatment={"cell.head": "euclidean"},
        control={"cell.head": "baseline"},
        expect="greater",
    )
    values.update(changes)
    return C.Claim(**values)


def verdict(claim, table, scale="embedded"):
    result = C.evaluate([claim], [(scale, "synthetic", table)])
    assert len(result) == 1, result
    return result.iloc[0]


def test_a_clear_effect_in_the_papers_direction_is_reproduced():
    row = verdict(ev_claim(), toy_table(effect=0.2))
    assert row.verdict == "reproduced"
    assert row.n == 8 and row.value == pytest.approx(0.2, abs=0.02)
    assert row.ci_low > 0 and row.p_value < 0.05


def test_a_clear_effect_against_the_paper_is_not_reproduced():
    assert verdict(ev_claim(), toy_table(effect=-0.2)).verdict == "not reproduced"


def test_no_effect_is_inconclusive():
    row = verdict(ev_claim(), toy_table(effect=0.0, noise=0.05))
    assert row.verdict == "inconclusive"


def test_one_seed_is_never_enough():
    row = verdict(ev_claim(), toy_table(effect=0.5, n_seeds=1))
    assert row.verdict == "inconclusive" and "1 pairs < 5" in row.reason


def test_verdicts_are_per_setting():
    table = pd.concat([toy_table(0.2, setting="faithful"), toy_table(-0.2, setting="corrected")])
    result = C.evaluate([ev_claim()], [("embedded", "synthetic", table)]).set_index("setting")
    assert result.loc["faithful", "verdict"] == "reproduced"
    assert result.loc["corrected", "verdict"] == "not reproduced"


def test_verdicts_are_per_scale_and_missing_scale_is_not_run():
    tables = [("embedded", "a", toy_table(0.2)), ("paper", "b", toy_table(0.5, n_seeds=4))]
    result = C.evaluate([ev_claim()], tables, scales=["embedded", "paper", "cluster"]).set_index("scale")
    assert result.loc["embedded", "verdict"] == "reproduced"
    assert result.loc["paper", "verdict"] == "inconclusive"
    assert result.loc["cluster", "verdict"] == "not run"


def test_failed_and_diverged_cells_do_not_count():
    table = toy_table(0.2)
    table.loc[table["cell.head"] == "euclidean", "status"] = "failed"
    row = verdict(ev_claim(), table)
    assert row.verdict == "not run" and "no paired ok cells" in row.reason


def test_censored_grokking_epochs_never_counts_as_latest():
    rows = []
    for s in range(6):
        rows.append(
            {
                "status": "ok",
                "family": "toy",
                "cell.study": "grid",
                "cell.head": "baseline",
                "cell.seed": s,
                "grok_epoch_test": None,
            }
        )  # never grokked
        rows.append(
            {
                "status": "ok",
                "family": "toy",
                "cell.study": "grid",
                "cell.head": "euclidean",
                "cell.seed": s,
                "grok_epoch_test": 300 + s,
            }
        )
    claim = ev_claim(metric="grok_epoch_test", expect="less", censored=True)
    row = verdict(claim, pd.DataFrame(rows))
    assert row.verdict == "reproduced"
    assert row.value == -1.0  # every pair: treatment earlier
    assert row.control.startswith("0/6 reached")


def test_by_gives_one_row_per_group():
    a = toy_table(0.2)
    b = toy_table(-0.2).assign(**{"cell.task": "lattice"})
    result = C.evaluate([ev_claim(by=("cell.task",))], [("embedded", "s", pd.concat([a, b]))]).set_index("group")
    assert result.loc["task=modular_addition", "verdict"] == "reproduced"
    assert result.loc["task=lattice", "verdict"] == "not reproduced"


@pytest.mark.parametrize("effect, expected", [(0.0005, "reproduced"), (0.05, "not reproduced")])
def test_parity_within_and_outside_the_margin(effect, expected):
    claim = ev_claim(kind="parity", margin=0.005, metric="test_accuracy")
    table = toy_table(effect, metric="test_accuracy", noise=0.0005)
    assert verdict(claim, table).verdict == expected


def test_noninferior_loss():
    claim = ev_claim(kind="noninferior", expect="less", margin=0.01, metric="val_loss")
    assert verdict(claim, toy_table(-0.05, metric="val_loss")).verdict == "reproduced"
    assert verdict(claim, toy_table(+0.2, metric="val_loss")).verdict == "not reproduced"


def test_rank_agreement_with_a_published_table():
    reference = {"a": 92.6, "b": 92.3, "c": 90.9, "d": 83.4, "e": 66.4, "f": 9.8}
    rows = [
        {
            "status": "ok",
            "family": "vision",
            "cell.head": head,
            "cell.seed": s,
            "test_accuracy": value / 100 + 1e-3 * s,
        }
        for head, value in reference.items()
        for s in range(5)
    ]
    claim = C.Claim(
        id="T-RANK",
        paper="miller-golub",
        where="t",
        words="w",
        kind="rank_agreement",
        family="vision",
        metric="test_accuracy",
        select={},
        group_on="cell.head",
        reference=reference,
    )
    row = verdict(claim, pd.DataFrame(rows))
    assert row.verdict == "reproduced" and row.value == pytest.approx(1.0)
    reversed_rows = pd.DataFrame(rows).assign(test_accuracy=lambda t: -t["test_accuracy"])
    assert verdict(claim, reversed_rows).verdict == "not reproduced"


def test_not_runnable_claims_say_why_at_every_scale():
    claim = C.Claim(id="T-NO", paper="baek", where="t", words="w", kind="not_runnable", reason="no ImageNet here")
    result = C.evaluate([claim], [], scales=["embedded", "paper"])
    assert list(result.verdict) == ["not run", "not run"] and set(result.reason) == {"no ImageNet here"}


def test_evaluation_is_deterministic():
    table = toy_table(0.01, noise=0.02)
    a = C.evaluate([ev_claim()], [("e", "s", table)])
    b = C.evaluate([ev_claim()], [("e", "s", table)])
    pd.testing.assert_frame_equal(a, b)


def test_small_numbers_are_not_rounded_to_zero():
    assert C.format_number(3.2e-7) == "3.20e-07"
    assert C.format_number(0.123456) == "0.123"
    assert C.format_number(math.nan) == "n/a"


# ------------------------------------------------------------------------------------------- the shipped file
def test_shipped_claims_file_loads_and_links():
    studies, claims = C.load()
    ids = {c.id for c in claims}
    required = {
        "B-EV",
        "B-DATA",
        "B-GROK",
        "B-CIRCLE-ACC",
        "B-CIRCLE-EV",
        "B-MNIST-ACC",
        "B-MNIST-PERIPHERY",
        "B-TWO",
        "B-GPT",
        "B-IMNET",
        "M-VIS-COS",
        "M-VIS-INT-BC",
        "M-VIS-INT-MAHA",
        "M-LLM-GRAD",
        "M-LLM-REP",
        "M-LLM-CO2",
        "M-MNIST1",
    }
    assert required <= ids, sorted(required - ids)
    for study in studies:
        assert study.claims, study.id
    for claim in claims:
        assert claim.kind in C.KINDS


def test_a_malformed_claims_file_names_the_problem(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("studies: []\nclaims:\n  - {id: X-1, paper: baek, where: w, words: w, kind: compare}\n")
    with pytest.raises(ValueError, match="claims"):
        C.load(path)


def test_a_missing_metric_column_is_named():
    row = verdict(ev_claim(metric="ev_top2"), toy_table(0.2))
    assert row.verdict == "not run" and "no column ev_top2" in row.reason
