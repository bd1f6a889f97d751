"""HTML for people: the claims table (results/claims.html) and the index page that opens with it.

Plain HTML with a little inline CSS: no script and nothing from a CDN, so the pages open offline from any folder.
"""

from __future__ import annotations

import datetime
import html
import os
from pathlib import Path

import pandas as pd

from harmonic.claims import format_number
from harmonic.settings import SETTINGS

VERDICT_COLOURS = {
    "reproduced": "#c8e6c9",
    "not reproduced": "#ffcdd2",
    "inconclusive": "#fff9c4",
    "not run": "#e0e0e0",
}
STYLE = (
    "<style>body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}"
    "th{background:#f5f5f5}img{max-width:20em;border:1px solid #ccc;margin:.3em}figure{display:inline-block;margin:0}"
    ".study{border-top:1px solid #ddd;margin-top:1.5em}.small{color:#555;font-size:85%}</style>"
)
LEGEND = (
    "<p class='small'>Each verdict comes from a test over seeds (see the claim's row in the full table): "
    "<b>reproduced</b> the one-sided test in the paper's direction rejects at 5 % (parity: the 95 % CI lies within the "
    "margin); <b>not reproduced</b> the opposite direction rejects; <b>inconclusive</b> the seeds cannot tell (also "
    "when fewer than 5 paired seeds exist: below that an exact sign-flip test cannot reach 5 %); <b>not run</b> no cells for it at that scale, with the reason. "
    "<i>faithful</i> = what the original code ran, <i>corrected</i> = what the paper states or a careful experiment "
    "needs (docs/deviations.md).</p>"
)


def esc(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return html.escape(format_number(value))
    return html.escape(str(value))


def verdict_cell(verdict, title="", note="") -> str:
    """A coloured verdict; the reason shows on hover (and in the full table)."""
    colour = VERDICT_COLOURS.get(verdict, "#fff")
    return f'<td style="background:{colour}" title="{esc(title)}">{esc(verdict)}{esc(note)}</td>'


def summary_columns(result: pd.DataFrame) -> list[tuple[str, str | None]]:
    """The summary's columns: every (scale, setting) that ran, scales in the table's order and settings in SETTINGS
    order, then (scale, None) for each scale where nothing ran."""
    ran = result.dropna(subset=["setting"])
    scale_order = {scale: i for i, scale in enumerate(dict.fromkeys(result["scale"]))}
    setting_order = {setting: i for i, setting in enumerate(SETTINGS)}
    columns = sorted(
        dict.fromkeys(zip(ran["scale"], ran["setting"])),
        key=lambda c: (scale_order[c[0]], setting_order.get(c[1], len(SETTINGS))),
    )
    return columns + [(scale, None) for scale in dict.fromkeys(result["scale"]) if scale not in set(ran["scale"])]


def summary_cell(rows: pd.DataFrame, scale: str, setting: str | None) -> pd.Series:
    """A claim's (one group's) row at (scale, setting); where that setting has no row, the scale's "not run" row,
    or a "not run" row saying that only other settings ran there."""
    match = rows[(rows["scale"] == scale) & (rows["setting"] == setting)]
    if match.empty:
        match = rows[(rows["scale"] == scale) & rows["setting"].isna()]
    if not match.empty:
        return match.iloc[0]
    others = sorted(rows.loc[rows["scale"] == scale, "setting"].dropna().unique())
    why = f"only {', '.join(others)} cells of this claim at this scale" if others else "no cells at this scale"
    return pd.Series({"verdict": "not run", "reason": why, "n": float("nan")})


def summary_table(result: pd.DataFrame) -> str:
    """One row per claim (and group), one column per (scale, setting): the verdicts at a glance. A claim that was not
    run at a scale (no setting to speak of) shows "not run" under every setting of that scale."""
    if result.empty:
        return "<p>No claims evaluated.</p>"
    result = result.assign(group=result["group"].fillna(""))
    columns = summary_columns(result)
    parts = ["<table><tr><th>claim</th><th>group</th><th>paper says</th>"]
    parts += [f"<th>{esc(scale)} / {esc(setting or '-')}</th>" for scale, setting in columns] + ["</tr>"]
    for (claim, group), rows in result.groupby(["claim", "group"], sort=False):
        first = rows.iloc[0]
        parts.append(
            f"<tr><td><b>{esc(claim)}</b><br><span class='small'>{esc(first['words'])}</span></td>"
            f"<td>{esc(group)}</td><td class='small'>{esc(first['paper_number'])}</td>"
        )
        for scale, setting in columns:
            row = summary_cell(rows, scale, setting)
            n = f" (n={int(row['n'])})" if pd.notna(row.get("n")) and row["verdict"] != "not run" else ""
            parts.append(verdict_cell(row["verdict"], row["reason"], n))
        parts.append("</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def summary_markdown(result: pd.DataFrame) -> str:
    """The verdicts at a glance for docs/: one line per claim, one column per (scale, setting); a claim evaluated per
    group lists its groups under each verdict (e.g. "reproduced: lattice, modular_addition; not reproduced: ...")."""
    if result.empty:
        return "No claims evaluated.\n"
    result = result.assign(group=result["group"].fillna(""))
    columns = summary_columns(result)
    header = ["claim", "paper says"] + [f"{scale} / {setting or '-'}" for scale, setting in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for claim, rows in result.groupby("claim", sort=False):
        first = rows.iloc[0]
        cells = [
            f"**{claim}** {first['words']}",
            "" if pd.isna(first["paper_number"]) else str(first["paper_number"]),
        ]
        for scale, setting in columns:
            at_scale = rows[rows["scale"] == scale]
            verdicts = {}  # verdict -> the groups that got it, in the table's order
            for group, group_rows in at_scale.groupby("group", sort=False):
                verdict = summary_cell(group_rows, scale, setting)["verdict"]
                verdicts.setdefault(verdict, []).append(group.split("=", 1)[-1])
            if not verdicts or list(verdicts) == ["not run"]:
                cells.append("not run")
            elif len(verdicts) == 1 and next(iter(verdicts.values())) == [""]:  # a claim without groups
                cells.append(next(iter(verdicts)))
            else:
                cells.append(
                    "; ".join(f"{v}: {', '.join(g or 'all' for g in groups)}" for v, groups in verdicts.items())
                )
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def full_table(result: pd.DataFrame) -> str:
    """Every evaluated row with its statistic, CI, p-value, test, arms and reason."""
    shown = [
        "claim",
        "scale",
        "setting",
        "group",
        "verdict",
        "statistic",
        "value",
        "ci_low",
        "ci_high",
        "p_value",
        "n",
        "treatment",
        "control",
        "test",
        "reason",
        "where",
        "source",
    ]
    parts = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in shown) + "</tr>"]
    for _, row in result.iterrows():
        cells = [verdict_cell(row[c], row["reason"]) if c == "verdict" else f"<td>{esc(row[c])}</td>" for c in shown]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def claims_page(result: pd.DataFrame, studies) -> str:
    """results/claims.html: the summary, the legend, then every row in full."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>Claims: reproduced or not</title>',
            STYLE,
            "</head><body><h1>The papers' claims against our results</h1>",
            LEGEND,
            summary_table(result),
            "<h2>Every evaluation</h2>",
            full_table(result),
            "</body></html>",
        ]
    )


def link(target, out_dir, text=None) -> str:
    href = os.path.relpath(target, out_dir)
    return f'<a href="{html.escape(href)}">{html.escape(text or Path(target).name)}</a>'


def figures_html(directory, out_dir) -> str:
    images = sorted(Path(directory).glob("*.png"))
    if not images:
        return "<p class='small'>(no figure: the notebook says why)</p>"
    parts = []
    for image in images:
        href = html.escape(os.path.relpath(image, out_dir))
        parts.append(
            f'<figure><a href="{href}"><img src="{href}" alt="{html.escape(image.stem)}"></a>'
            f"<figcaption class='small'>{html.escape(image.stem)}</figcaption></figure>"
        )
    return "\n".join(parts)


def index_page(out, result, studies, claim_list, notebooks, figure_dirs, tables, claims_html=None) -> str:
    """results/index.html: the claims table first, then each study's figures beside the paper's numbers, then every
    notebook and table."""
    out_dir = Path(out).parent
    notebook_html = {Path(p).stem: p for p in notebooks}
    figure_dir = {Path(p).name: p for p in figure_dirs}
    claim_by_id = {c.id: c for c in claim_list}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>harmonic-repro results</title>',
        STYLE,
        "</head><body><h1>harmonic-repro results</h1>",
        f"<p class='small'>Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}.</p>",
        "<h2>Which claims hold</h2>",
        LEGEND,
        summary_table(result) if result is not None else "<p>No claims table.</p>",
    ]
    if claims_html:
        parts.append(f"<p>{link(claims_html, out_dir, 'Every evaluation with its statistic, CI and test')}</p>")
    parts.append("<h2>Studies</h2>")
    for study in studies:
        shown = [n for n in study.notebooks if n in notebook_html or n in figure_dir]
        parts.append(f"<div class='study'><h3>{esc(study.title)}</h3>")
        parts.append(
            f"<p class='small'>{esc(study.paper)}, {esc(study.figure)}; study <code>{esc(study.id)}</code></p>"
        )
        numbers = [
            f"<li><b>{esc(c)}</b>: {esc(claim_by_id[c].words)} <span class='small'>(paper: "
            f"{esc(claim_by_id[c].paper_number)})</span></li>"
            for c in study.claims
            if c in claim_by_id
        ]
        parts.append("<ul>" + "".join(numbers) + "</ul>")
        if not shown:
            parts.append("<p class='small'>(not in this run)</p>")
        for name in shown:
            if name in notebook_html:
                parts.append(f"<p>notebook: {link(notebook_html[name], out_dir, name)}</p>")
            if name in figure_dir:
                parts.append(figures_html(figure_dir[name], out_dir))
        parts.append("</div>")
    parts.append("<h2>Every notebook</h2><ul>")
    parts += [f"<li>{link(path, out_dir, Path(path).stem)}</li>" for path in sorted(notebooks)]
    parts.append("</ul><h2>Tables</h2><ul>")
    parts += [f"<li>{link(path, out_dir)}</li>" for path in sorted(tables)]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def value_with_ci(row) -> str:
    """'statistic [CI low, CI high]' of one evaluated claim, or '' when nothing was computed."""
    if pd.isna(row["value"]):
        return ""
    return f"{format_number(row['value'])} [{format_number(row['ci_low'])}, {format_number(row['ci_high'])}]"


def claims_markdown(result: pd.DataFrame, command: str) -> str:
    """The claims table as Markdown for docs/: one line per evaluation, with the command that produced it."""
    lines = [
        "# The claims table: what was run here, and the verdicts",
        "",
        "<!-- generated by the command below; do not edit by hand -->",
        f"Generated by `{command}` (docs/claims.md explains the tests and verdicts; scale `embedded` is the default",
        "`make run`, the other scales are committed tables of runs made elsewhere, named in config.yaml's claims.evidence).",
        "",
        "## At a glance",
        "",
        "Each claim's verdict per scale and setting (per group where the claim is tested per task or model; the rows "
        "below give each test's statistic, CI, p and seeds).",
        "",
        summary_markdown(result),
        "## Every evaluation",
        "",
        "| claim | scale | setting | group | verdict | n | statistic | value [95 % CI] | p | treatment | control |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in result.iterrows():
        value = value_with_ci(row)
        verdict = row["verdict"] if row["verdict"] != "not run" else f"not run: {row['reason']}"
        cells = [
            row["claim"],
            row["scale"],
            row["setting"],
            row["group"],
            verdict,
            "" if pd.isna(row["n"]) else int(row["n"]),
            row["statistic"],
            value,
            "" if pd.isna(row["p_value"]) else format_number(row["p_value"]),
            row["treatment"],
            row["control"],
        ]
        lines.append("| " + " | ".join("" if pd.isna(c) else str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def findings_markdown(result: pd.DataFrame) -> str:
    """One line per evaluated claim: the verdict first, then the statistic, its CI, the seeds and the paper's words."""
    if result.empty:
        return "**Finding:** no claim of this figure's studies."
    lines = ["**Finding** (this figure's claims over this run's table; docs/claims.md):", ""]
    for _, row in result.iterrows():
        where = ", ".join(str(v) for v in (row["setting"], row["group"]) if isinstance(v, str) and v)
        head = f"- **{row['claim']}**{f' ({where})' if where else ''}: **{row['verdict']}**"
        if row["verdict"] == "not run":
            lines.append(f"{head}: {row['reason']}")
            continue
        value = value_with_ci(row)
        lines.append(f"{head}: {row['statistic']} {value}, n = {int(row['n'])}; {row['reason']}. {row['words']}")
    return "\n".join(lines)


def notebook_findings(table, notebook: str):
    """The claims of every study that names `notebook`, evaluated over `table` (a path or a DataFrame), as Markdown for
    the top of a rendered notebook: figures lead with what they show."""
    from IPython.display import Markdown

    from harmonic import claims

    studies, claim_list = claims.load()
    wanted = {claim for study in studies if notebook in study.notebooks for claim in study.claims}
    chosen = [claim for claim in claim_list if claim.id in wanted and claim.kind != "not_runnable"]
    if isinstance(table, pd.DataFrame):
        frame = table
    else:
        frame = claims.read_table(table) if Path(table).exists() else pd.DataFrame()
    result = claims.evaluate(chosen, [("this run", str(notebook), frame)], scales=["this run"])
    return Markdown(findings_markdown(result))
