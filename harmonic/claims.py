"""The papers' claims as data (harmonic/claims.yaml), evaluated over the results tables with a stated test.

A claim names the cells it reads (a selector over one family's table), the metric, the two arms it compares (the
harmonic arm and its control) or the reference it is held against, and the direction the paper states. It is
evaluated once per (scale, setting, `by` group): scale says which tables the evidence came from (the embedded
default, the paper preset, a committed GPU run), setting is faithful or corrected (harmonic.settings). Verdicts:

    reproduced      the one-sided test in the paper's direction rejects at alpha (or, for parity, the CI lies
                    inside the margin)
    not reproduced  the test in the opposite direction rejects (or the CI lies outside the margin)
    inconclusive    neither: the seeds cannot tell (also when fewer than `min_seeds` pairs exist)
    not run         no cells for it at this scale (why: the family or study is not in the run, or the data or
                    compute is not available here)

Tests come from scipy.stats: exact sign-flip permutation tests for paired differences (random ones beyond 2^13
pairs, seeded), bootstrap percentile CIs, and a permutation test
of Spearman's rho for rank agreement with a published table. Nothing here knows a verdict in advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml
from scipy import stats

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
KINDS = ("compare", "parity", "noninferior", "rank_agreement", "not_runnable")
ALPHA = 0.05
RANDOM_STATE = 0  # permutation and bootstrap resampling are seeded: the same table always gives the same verdict
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "claims.schema.yaml"


@dataclass(frozen=True)
class Claim:
    """One published claim and how it is checked (see harmonic/claims.yaml for the fields' meaning)."""

    id: str
    paper: str
    where: str
    words: str
    kind: str
    family: str | None = None
    study: str | None = None
    paper_number: str = ""
    metric: str | None = None
    select: dict = field(default_factory=dict)
    treatment: dict = field(default_factory=dict)
    control: dict = field(default_factory=dict)
    pair_on: tuple = ("cell.seed",)
    by: tuple = ()
    expect: str = "greater"
    margin: float = 0.0
    censored: bool = False
    group_on: str | None = None
    reference: dict = field(default_factory=dict)
    min_seeds: int = 5  # an exact one-sided sign-flip test cannot reach p < 0.05 with fewer than 5 pairs
    reason: str = ""


@dataclass(frozen=True)
class Study:
    """A figure or table of a paper: the cells it reads, the notebook that draws it and the claims it carries."""

    id: str
    paper: str
    figure: str
    family: str
    title: str
    select: dict = field(default_factory=dict)
    notebooks: tuple = ()
    claims: tuple = ()


def load(path=None):
    """Studies and claims from the YAML file (default: the one shipped in the package), checked against the schema."""
    text = Path(path).read_text() if path else resources.files("harmonic").joinpath("claims.yaml").read_text()
    data = yaml.safe_load(text)
    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ValueError(f"claims file {path or 'harmonic/claims.yaml'}: at {where or 'top level'}: {error.message}")
    studies = [Study(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}) for s in data["studies"]]
    claims = [Claim(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()}) for c in data["claims"]]
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"claims file: duplicate claim ids {duplicates}")
    known = set(ids)
    for study in studies:
        missing = [c for c in study.claims if c not in known]
        if missing:
            raise ValueError(f"claims file: study {study.id} names unknown claims {missing}")
    return studies, claims


# ----------------------------------------------------------------------------------------------- selecting cells
def select_rows(table: pd.DataFrame, selector: dict) -> pd.DataFrame:
    """Rows whose columns equal the selector's values (a list means any of them); compared as text, so a seed
    written 0 in YAML matches 0 or "0" in the table. A column the table lacks selects nothing."""
    mask = pd.Series(True, index=table.index)
    for column, wanted in selector.items():
        if column not in table.columns:
            return table.iloc[0:0]
        values = wanted if isinstance(wanted, list | tuple) else [wanted]
        mask &= table[column].map(_text).isin({_text(v) for v in values})
    return table[mask]


def _text(value):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def setting_of(table: pd.DataFrame) -> pd.Series:
    """The setting column (cells written before settings existed count as corrected: they ran the stated method)."""
    for column in ("cell.setting", "hp.setting"):
        if column in table.columns:
            return table[column].fillna("corrected")
    return pd.Series("corrected", index=table.index)


# ------------------------------------------------------------------------------------------------------ tests
def metric_values(rows: pd.DataFrame, claim: Claim) -> pd.Series:
    """The claim's metric over ok cells; for a censored metric (an epoch that may never come) "never" is +inf."""
    ok = rows[rows["status"] == "ok"] if "status" in rows.columns else rows
    if claim.metric not in ok.columns:
        return pd.Series(dtype=float)
    values = pd.to_numeric(ok[claim.metric], errors="coerce")
    if claim.censored:
        return values.fillna(math.inf)
    return values.dropna()


def paired_differences(treatment: pd.DataFrame, control: pd.DataFrame, claim: Claim):
    """Treatment minus control over cells matched on `pair_on` (e.g. seed, task); unmatched cells are dropped."""
    keys = list(claim.pair_on)
    t = treatment.assign(_value=metric_values(treatment, claim)).dropna(subset=["_value"])
    c = control.assign(_value=metric_values(control, claim)).dropna(subset=["_value"])
    if any(k not in t.columns or k not in c.columns for k in keys):
        return np.array([]), np.array([]), np.array([])
    t = t.assign(**{k: t[k].map(_text) for k in keys})
    c = c.assign(**{k: c[k].map(_text) for k in keys})
    for arm, name in ((t, "treatment"), (c, "control")):
        if arm.duplicated(keys).any():
            raise AmbiguousPairing(f"several {name} cells share one {'/'.join(keys)} key: narrow the selector")
    merged = t[keys + ["_value"]].merge(c[keys + ["_value"]], on=keys, suffixes=("_t", "_c"))
    tv, cv = merged["_value_t"].to_numpy(float), merged["_value_c"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        diff = tv - cv
    return tv, cv, diff


class AmbiguousPairing(ValueError):
    """Two cells of one arm would pair with the same control cell: the claim's selectors are too wide."""


def signed(diff: np.ndarray) -> np.ndarray:
    """Sign of each paired difference, with inf - inf (both never) a tie: the censored-metric statistic."""
    out = np.sign(np.nan_to_num(diff, nan=0.0, posinf=1.0, neginf=-1.0))
    return out


def sign_flip_p(values: np.ndarray, alternative: str) -> float:
    """One-sided p-value of the mean of paired values under random sign flips (exact for up to 13 pairs)."""
    if len(values) == 0 or np.all(values == 0):
        return 1.0
    if len(values) == 1:  # the two sign flips of one value
        return 0.5 if (values[0] > 0) == (alternative == "greater") else 1.0
    result = stats.permutation_test(
        (values,),
        np.mean,
        permutation_type="samples",
        alternative=alternative,
        n_resamples=9999,
        random_state=RANDOM_STATE,
    )
    return float(result.pvalue)


def bootstrap_ci(values: np.ndarray) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the mean; a single value or constant values give a degenerate interval."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,), np.mean, confidence_level=0.95, method="percentile", n_resamples=9999, random_state=RANDOM_STATE
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summary(values: np.ndarray, censored: bool) -> str:
    """A short description of one arm: mean and spread, or for censored metrics the median and how many reached."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "no cells"
    if censored:
        reached = np.isfinite(values)
        median = np.median(values)
        return f"{reached.sum()}/{len(values)} reached, median {format_number(median) if np.isfinite(median) else 'never'}"
    spread = f" ± {format_number(np.std(values, ddof=1))}" if len(values) > 1 else ""
    return f"mean {format_number(np.mean(values))}{spread} (n={len(values)})"


def format_number(x) -> str:
    """Numbers for people: 3 significant digits, scientific notation for small or large magnitudes (never 0.0)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.3g}"
    return f"{x:.2e}"


# -------------------------------------------------------------------------------------------------- evaluation
def evaluate_rows(claim: Claim, rows: pd.DataFrame) -> dict:
    """Statistic, uncertainty, test and verdict of one claim over one (scale, setting, group) slice of a table."""
    if claim.metric not in rows.columns:
        return dict(n=0, verdict="not run", reason=f"the {claim.family} table has no column {claim.metric}")
    if claim.kind == "rank_agreement":
        return rank_agreement(claim, rows)
    treatment, control = select_rows(rows, claim.treatment), select_rows(rows, claim.control)
    try:
        tv, cv, diff = paired_differences(treatment, control, claim)
    except AmbiguousPairing as exc:
        return dict(n=0, verdict="not run", reason=str(exc))
    out = dict(
        n=len(diff),
        treatment=summary(tv, claim.censored),
        control=summary(cv, claim.censored),
    )
    if len(diff) == 0:
        arms = f"treatment {len(treatment)} cells, control {len(control)} cells"
        return out | dict(verdict="not run", reason=f"no paired ok cells ({arms})")
    if claim.censored:
        values, statistic = signed(diff), "mean sign of paired difference (never = inf)"
    else:
        values, statistic = diff, "mean paired difference (treatment - control)"
    low, high = bootstrap_ci(values)
    out |= dict(statistic=statistic, value=float(np.mean(values)), ci_low=low, ci_high=high)
    if claim.kind == "compare":
        opposite = "less" if claim.expect == "greater" else "greater"
        p = sign_flip_p(values, claim.expect)
        p_opposite = sign_flip_p(values, opposite)
        out |= dict(test=f"one-sided sign-flip permutation test, alpha {ALPHA}", p_value=p)
        if len(diff) < claim.min_seeds:
            return out | dict(verdict="inconclusive", reason=f"{len(diff)} pairs < {claim.min_seeds} needed")
        if p < ALPHA:
            return out | dict(
                verdict="reproduced", reason=f"p = {format_number(p)} in the paper's direction ({claim.expect})"
            )
        if p_opposite < ALPHA:
            return out | dict(
                verdict="not reproduced", reason=f"p = {format_number(p_opposite)} in the opposite direction"
            )
        return out | dict(
            verdict="inconclusive", reason=f"p = {format_number(p)}; opposite p = {format_number(p_opposite)}"
        )
    margin = claim.margin
    if claim.kind == "parity":
        out |= dict(test=f"95 % bootstrap CI of the difference within ±{format_number(margin)}")
        inside, outside = -margin <= low and high <= margin, high < -margin or low > margin
    else:  # noninferior: the treatment is no worse than control by more than the margin, in the stated direction
        sign = 1.0 if claim.expect == "less" else -1.0  # for "less" a smaller metric is better (e.g. a loss)
        worst = high if sign > 0 else -low
        best = low if sign > 0 else -high
        out |= dict(test=f"95 % bootstrap CI: treatment not worse than control by more than {format_number(margin)}")
        inside, outside = worst <= margin, best > margin
    if len(diff) < claim.min_seeds:
        return out | dict(verdict="inconclusive", reason=f"{len(diff)} pairs < {claim.min_seeds} needed")
    if inside:
        return out | dict(
            verdict="reproduced", reason=f"CI [{format_number(low)}, {format_number(high)}] within the margin"
        )
    if outside:
        return out | dict(
            verdict="not reproduced", reason=f"CI [{format_number(low)}, {format_number(high)}] outside the margin"
        )
    return out | dict(
        verdict="inconclusive", reason=f"CI [{format_number(low)}, {format_number(high)}] straddles the margin"
    )


def rank_agreement(claim: Claim, rows: pd.DataFrame) -> dict:
    """Spearman's rho between our per-group mean of the metric and the paper's published numbers."""
    ok = rows.assign(_value=metric_values(rows, claim)).dropna(subset=["_value"])
    if claim.group_on not in ok.columns:
        return dict(n=0, verdict="not run", reason=f"table has no column {claim.group_on}")
    ours = ok.groupby(ok[claim.group_on].map(_text))["_value"].mean()
    seeds = ok.groupby(ok[claim.group_on].map(_text)).size()
    common = [g for g in claim.reference if g in ours.index]
    out = dict(
        n=len(common),
        treatment="; ".join(f"{g} {format_number(ours[g])}" for g in common),
        control="paper: " + "; ".join(f"{g} {format_number(claim.reference[g])}" for g in common),
    )
    if len(common) < 4:
        return out | dict(verdict="not run" if not common else "inconclusive", reason=f"{len(common)} groups < 4")
    x = np.array([ours[g] for g in common])
    y = np.array([claim.reference[g] for g in common], dtype=float)
    rho = float(stats.spearmanr(x, y).statistic)
    result = stats.permutation_test(
        (x, y),
        lambda a, b: stats.spearmanr(a, b).statistic,
        permutation_type="pairings",
        alternative="greater",
        n_resamples=9999,
        random_state=RANDOM_STATE,
    )
    p = float(result.pvalue)
    out |= dict(statistic="Spearman rho (ours vs paper)", value=rho, p_value=p, test="one-sided permutation test")
    min_seeds = int(seeds[common].min())
    if min_seeds < claim.min_seeds:
        return out | dict(verdict="inconclusive", reason=f"some groups have {min_seeds} seeds < {claim.min_seeds}")
    if p < ALPHA:
        return out | dict(verdict="reproduced", reason=f"rho {format_number(rho)}, p = {format_number(p)}")
    if rho <= 0:
        return out | dict(verdict="not reproduced", reason=f"rho {format_number(rho)} <= 0")
    return out | dict(verdict="inconclusive", reason=f"rho {format_number(rho)}, p = {format_number(p)}")


COLUMNS = [
    "claim",
    "paper",
    "where",
    "words",
    "paper_number",
    "scale",
    "setting",
    "group",
    "verdict",
    "reason",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "p_value",
    "test",
    "n",
    "treatment",
    "control",
    "source",
]


def evaluate(claims: list[Claim], tables: list[tuple[str, str, pd.DataFrame]], scales=None) -> pd.DataFrame:
    """Every claim over every table of its family: `tables` holds (scale, source, table) triples, each table holding
    one family's cells (a `family` column). A claim with no table at a scale is "not run" there, with the reason."""
    scales = list(dict.fromkeys(scales or [scale for scale, _, _ in tables]))
    out = []
    for claim in claims:
        base = dict(
            claim=claim.id, paper=claim.paper, where=claim.where, words=claim.words, paper_number=claim.paper_number
        )
        if claim.kind == "not_runnable":
            out += [base | dict(scale=s, verdict="not run", reason=claim.reason) for s in scales]
            continue
        for scale in scales:
            found = False
            for table_scale, source, table in tables:
                if table_scale != scale or "family" not in table or not (table["family"] == claim.family).any():
                    continue
                rows = select_rows(table, claim.select)
                if rows.empty:
                    continue
                found = True
                settings = setting_of(rows)
                for setting in sorted(settings.unique()):
                    slice_ = rows[settings == setting]
                    groups = [((), slice_)] if not claim.by else slice_.groupby(list(claim.by), sort=True)
                    for key, group_rows in groups:
                        key = key if isinstance(key, tuple) else (key,)
                        group = ", ".join(f"{c.split('.')[-1]}={_text(v)}" for c, v in zip(claim.by, key))
                        result = evaluate_rows(claim, group_rows)
                        out.append(base | dict(scale=scale, setting=setting, group=group, source=source) | result)
            if not found:
                why = claim.reason or f"no {claim.family} cells of study {claim.study or claim.select} in this run"
                out.append(base | dict(scale=scale, verdict="not run", reason=why))
    return pd.DataFrame(out, columns=COLUMNS)


def read_table(path) -> pd.DataFrame:
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
