"""``python -m analysis report GROUP --out DIR``: a study's report as one self-contained HTML
page (figures embedded as PNG data, no script, no CDN: it opens offline and mails as one file),
a Markdown summary beside its PNG figures, and CSV tables.

Contents: the paper's finding beside ours with the verdict and why, per claim; the figures
(for DINO studies the two panels of the DINO paper's collapse study, teacher entropy and KL over
training with the ln K line, one colour per arm, the line the mean over seeds and the band
their range); every compared metric's final value per arm, mean ± standard deviation over
seeds; each run's diagnosis.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from analysis.report import write_csv
from analysis.study import StudyResult, curves, titles
from analysis.verdict import fmt
from core import metrics as M
from trainer.store import atomic_write_bytes

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
PANELS = (M.DINO_TEACHER_ENTROPY, M.DINO_KL_TEACHER_STUDENT)
RULE = ("A run's final value is the mean of what it logged over the last tenth of its steps (k-NN: its last "
        "evaluation); analysis measures are computed on its last checkpoint. A claim is checked seed by seed on "
        "the runs of the same seed: reproduced when it holds for every seed, not reproduced when it holds for "
        "none, inconclusive when the seeds disagree (spread too wide) or a run failed. The study's verdict reads "
        "its headline claims.")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _label(metric: str) -> str:
    m = M.METRICS.get(metric)
    return m.label if m else titles().get(metric, metric)


def _curve_panel(ax, result: StudyResult, metric: str, colors: dict[str, str]) -> bool:
    drawn = False
    for c in curves(result, metric):
        mean = c.values.mean(0)
        ax.plot(c.steps, mean, color=colors[c.arm], lw=1.6, label=f"{c.arm} ({len(c.seeds)})")
        if len(c.seeds) > 1:
            ax.fill_between(c.steps, c.values.min(0), c.values.max(0), color=colors[c.arm], alpha=0.18, lw=0)
        drawn = True
    ax.set_title(_label(metric), fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    return drawn


def collapse_figure(result: StudyResult, colors: dict[str, str]) -> bytes | None:
    """The DINO paper's Fig. 7 panels: teacher entropy (with 0 and ln K) and KL over training."""
    from matplotlib.figure import Figure

    if not all(m in result.metrics for m in PANELS):
        return None
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    if not _curve_panel(axes[0], result, PANELS[0], colors):
        return None
    _curve_panel(axes[1], result, PANELS[1], colors)
    k = result.log_k()
    if k:
        axes[0].axhline(k, color="#555", ls="--", lw=1)
        axes[0].text(0.01, k, " ln K", va="bottom", fontsize=7, transform=axes[0].get_yaxis_transform())
    for ax in axes:
        ax.axhline(0, color="#999", lw=0.8)
    axes[1].legend(fontsize=7, title="arm (seeds)", title_fontsize=7)
    fig.suptitle("Teacher entropy and KL over training (line: mean over seeds, band: their range)", fontsize=9)
    return _png(fig)


def curves_figure(result: StudyResult, colors: dict[str, str]) -> bytes | None:
    """The other compared metrics that training logs, over training."""
    from matplotlib.figure import Figure

    names = [m for m in result.metrics if m in M.METRICS and m not in PANELS]
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.7 * rows))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        _curve_panel(ax, result, name, colors)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def finals_figure(result: StudyResult, colors: dict[str, str]) -> bytes | None:
    """Each compared metric's final value per arm: bar = mean, whisker = std, dots = seeds."""
    from matplotlib.figure import Figure

    names = [m for m in result.metrics if any(result.values(a, m) for a in result.arms)]
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.6 * rows))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        for i, arm in enumerate(result.arms):
            xs = result.values(arm, name)
            if not xs:
                continue
            mean, std = np.mean(xs), np.std(xs, ddof=1) if len(xs) > 1 else 0.0
            ax.bar(i, mean, color=colors[arm], alpha=0.6, yerr=std, capsize=3)
            ax.scatter(np.full(len(xs), i), xs, s=9, color="k", zorder=3)
        ax.set_xticks(range(len(result.arms)), result.arms, rotation=30, ha="right", fontsize=7)
        ax.set_title(_label(name), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def final_rows(result: StudyResult) -> tuple[list[str], list[list[str]]]:
    """The final-metrics table: one row per arm, each metric as mean ± std over seeds."""
    header = ["arm", "seeds", *(_label(m) for m in result.metrics)]
    knn0 = M.EVAL_KNN_TOP1 in result.metrics
    if knn0:
        header.append("k-NN at step 0 (random init)")
    rows = []
    for arm in result.arms:
        done = [r for r in result.runs if r.arm == arm and r.status == "finished"]
        row = [arm, f"{len(done)} of {sum(r.arm == arm for r in result.runs)}"]
        for m in result.metrics:
            s = result.summary(arm, m)
            row.append(fmt(*s) if s else "-")
        if knn0:
            xs = [r.init[M.EVAL_KNN_TOP1] for r in done if M.EVAL_KNN_TOP1 in r.init]
            row.append(fmt(float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, len(xs))
                       if xs else "-")
        rows.append(row)
    return header, rows


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return "\n".join(["| " + " | ".join(map(esc, header)) + " |", "|" + " --- |" * len(header),
                      *("| " + " | ".join(map(esc, r)) + " |" for r in rows)])


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;"
       "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left;"
       "vertical-align:top}th{background:#f3f3f3}.v{font-weight:bold;padding:2px 6px;border-radius:3px}"
       ".reproduced{background:#d4f5d4}.not-reproduced{background:#f8d0d0}.inconclusive{background:#fbeec0}"
       ".pending{background:#e2e2e2}img{max-width:100%}")


def _badge(verdict: str) -> str:
    return f"<span class='v {verdict.replace(' ', '-')}'>{html.escape(verdict)}</span>"


def write_study_report(result: StudyResult, out: Path) -> list[Path]:
    """report.html, report.md, the figures (PNG) and finals.csv / runs.csv under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    colors = {a: COLORS[i % len(COLORS)] for i, a in enumerate(result.arms)}
    st = result.study
    figs = {"collapse.png": ("The collapse study (DINO paper, Fig. 7)", collapse_figure(result, colors)),
            "curves.png": ("Compared metrics over training", curves_figure(result, colors)),
            "finals.png": ("Final values per arm (bar: mean, whisker: std, dots: seeds)",
                           finals_figure(result, colors))}
    files = []
    for name, (_, data) in figs.items():
        if data is not None:
            atomic_write_bytes(out / name, data)
            files.append(out / name)
    title = f"{st.title}: group {result.group}" if st else f"Group {result.group}"
    header, rows = final_rows(result)
    runs_h = ["run", "arm", "seed", "status", "step", "diagnosis"]
    runs_rows = [[r.run_id, r.arm, str(r.seed), r.status + (f" ({r.reason})" if r.reason else ""),
                  f"{r.step} of {r.steps}", r.diagnosis or "-"]
                 for r in sorted(result.runs, key=lambda r: (result.arms.index(r.arm), r.seed))]
    claim_h = ["", "the paper", "rule", "verdict", "why (our figures)"]
    claim_rows = ([["headline" if c.claim.headline else "also", c.claim.text, c.claim.rule(titles()), c.verdict,
                    c.why] for c in result.verdict.claims] if result.verdict else [])
    # --- HTML ---
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if st:
        h.append(f"<p><b>Paper</b>: {html.escape(st.paper)}.<br><b>Finding</b>: {html.escape(st.finding)}</p>")
    if result.verdict:
        h.append(f"<h2>Verdict: {_badge(result.verdict.verdict)}</h2><p>{html.escape(result.verdict.why)}</p>")
        h.append(_html_table(claim_h, claim_rows).replace("<td>reproduced</td>", f"<td>{_badge('reproduced')}</td>")
                 .replace("<td>not reproduced</td>", f"<td>{_badge('not reproduced')}</td>")
                 .replace("<td>inconclusive</td>", f"<td>{_badge('inconclusive')}</td>")
                 .replace("<td>pending</td>", f"<td>{_badge('pending')}</td>"))
    for note in [*result.notes, *([st.note] if st and st.note else [])]:
        h.append(f"<p><i>{html.escape(note)}</i></p>")
    for name, (caption, data) in figs.items():
        if data is not None:
            h.append(f"<h2>{html.escape(caption)}</h2><img alt='{name}' src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'>")
    h.append(f"<h2>Final metrics (mean ± std over seeds)</h2>{_html_table(header, rows)}")
    h.append(f"<h2>Runs and their diagnosis</h2>{_html_table(runs_h, runs_rows)}")
    h.append(f"<h2>How the verdict is computed</h2><p>{html.escape(RULE)}</p></body></html>")
    atomic_write_bytes(out / "report.html", "\n".join(h).encode())
    # --- Markdown ---
    md = [f"# {title}", ""]
    if st:
        md += [f"**Paper**: {st.paper}.", "", f"**Finding**: {st.finding}", ""]
    if result.verdict:
        md += [f"## Verdict: {result.verdict.verdict}", "", result.verdict.why, "", _md_table(claim_h, claim_rows), ""]
    md += [f"*{n}*\n" for n in [*result.notes, *([st.note] if st and st.note else [])]]
    md += [f"## {cap}\n\n![{name}]({name})\n" for name, (cap, data) in figs.items() if data is not None]
    md += ["## Final metrics (mean ± std over seeds)", "", _md_table(header, rows), "",
           "## Runs and their diagnosis", "", _md_table(runs_h, runs_rows), "", "## How the verdict is computed", "",
           RULE, ""]
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    # --- CSV ---
    names = sorted({k for r in result.runs for k in r.final} & {*result.metrics, *titles()})
    files.append(write_csv(out / "finals.csv", ["run", "arm", "seed", "status", "step", *names, "diagnosis"],
                           [[r.run_id, r.arm, r.seed, r.status, r.step, *(r.final.get(n, "") for n in names),
                             r.diagnosis_label] for r in result.runs]))
    files.append(write_csv(out / "verdicts.csv", ["claim", "headline", "verdict", "why"],
                           [[c.claim.text, c.claim.headline, c.verdict, c.why] for c in result.verdict.claims]
                           if result.verdict else []))
    return [out / "report.html", out / "report.md", *files]
