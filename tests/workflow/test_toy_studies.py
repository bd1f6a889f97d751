"""Issue 16's toy studies through the workflow: stitching jobs downstream of the models they read, the GenEFT grid,
their rows in the toy table, their notebooks and claims (a tiny config, run for real once)."""

import pandas as pd
import pytest
from workflow_helpers import job_counts, load_config, snakemake, write_config


@pytest.fixture(scope="module")
def studies_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("toy_studies")
    config = load_config("toy_studies.yaml")
    path = write_config(workdir / "config.yaml", config)
    snakemake(workdir, configfile=path)
    return workdir, config


@pytest.mark.slow
def test_stitching_and_geneft_rows_notebooks_and_claims(studies_run):
    workdir, config = studies_run
    table = pd.read_parquet(workdir / "results/tables/toy.parquet")
    stitch = table[table["cell.study"] == "stitch"]
    models = table[table["cell.study"] == "grid"]
    assert len(stitch) == len(models) == 4 and (stitch["status"] == "ok").all()
    assert set(stitch["cell.front_study"]) == {"grid"}
    for _, row in stitch.iterrows():
        pairs = pd.read_csv(workdir / row["cell_dir"] / "pairs.csv")
        assert sorted(pairs["kind"]) == ["head", "seed"]  # 2 seeds x 2 heads: one partner of each kind
        assert row["stitch_partners_seed"] == 1 and 0 <= row["stitch_acc_seed"] <= 1
        assert row["stitch_penalty_seed"] == pytest.approx(pairs.loc[pairs["kind"] == "seed", "penalty"].iloc[0])
    geneft = table[table["cell.study"] == "geneft"]
    assert len(geneft) == 4 and set(geneft["cell.encoder_lr"]) == {0.001, 0.01}
    assert set(geneft["hp.decoder_lr"]) == {0.01} and set(geneft["hp.split"]) == {"dedup"}
    assert geneft["generalised"].isin([0, 1]).all() and geneft["in_transition"].isin([0, 1]).all()
    assert "hp.decoder_lr" in table and table.loc[table["cell.study"] == "grid", "hp.decoder_lr"].isna().all()
    for name in ("toy_stitching", "toy_geneft"):
        html = (workdir / f"results/notebooks/{name}.html").read_text()
        assert "Traceback" not in html
        assert list((workdir / f"results/figures/{name}").glob("*.png"))
    claims = pd.read_csv(workdir / "results/claims.csv")
    ran = claims[claims["claim"].isin(["U-STITCH", "U-CKA", "G-REGION", "G-SHARP"]) & (claims["n"] > 0)]
    assert set(ran["claim"]) == {"U-STITCH", "U-CKA", "G-REGION", "G-SHARP"}


@pytest.mark.slow
def test_a_retrained_model_reruns_only_the_stitches_that_read_it(studies_run, tmp_path):
    workdir, config = studies_run
    config["toy"]["overrides"] = [{"where": {"head": "euclidean", "seed": 1}, "set": {"lr": 0.005}}]
    path = write_config(tmp_path / "changed.yaml", config)
    counts = job_counts(snakemake(workdir, "-n", configfile=path).stdout)
    # euclidean seed 1 itself, euclidean seed 0 (its seed partner) and baseline seed 1 (its head partner)
    assert counts["toy_cell"] == 1 and counts["toy_stitch"] == 3
