"""report.md, report.csv and the printed table of a multirun."""

from __future__ import annotations

import csv
from pathlib import Path

from rnnlm.report.curves import plot
from rnnlm.report.jobs import NOT_STARTED, OPTUNA_RESULTS, Report, build_report, short_override

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
REPORT_PNG = "report.png"

CSV_COLUMNS = [
    "job",
    "overrides",
    "status",
    "num_parameters",
    "best_val_ppl",
    "test_ppl",
    "best_val_bleu",
    "test_bleu",
    "test_chrf",
    "tokens_per_sec",
    "wall_time_s",
    "tokens_seen",
    "error",
    "all_overrides",
]


def _fmt_int(value: int | float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def _fmt_ppl(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_overrides(overrides: list[str]) -> str:
    return (
        " ".join(f"`{_md_cell(short_override(o))}`" for o in overrides)
        if overrides
        else "(defaults)"
    )


def table(report: Report) -> str:
    """The Markdown table, one row per job."""
    best = report.best
    bleu = report.translation  # translation jobs: BLEU and chrF beside the perplexities
    rows = [
        "| job | overrides | status | parameters | best val ppl | test ppl | "
        + ("best val BLEU | test BLEU | test chrF | " if bleu else "")
        + "tokens/s | wall time |",
        "| --- | --- | --- | ---: | ---: | ---: | "
        + ("---: | ---: | ---: | " if bleu else "")
        + "---: | ---: |",
    ]
    for j in report.jobs:
        val = _fmt_ppl(j.best_val_ppl)
        if j is best and len(report.jobs) > 1:
            val = f"**{val}**"
        overrides = "?" if j.overrides is None else _md_overrides(j.varying)
        scores = (
            f"{_fmt_score(j.best_val_bleu)} | {_fmt_score(j.test_bleu)} | {_fmt_score(j.test_chrf)} | "
            if bleu
            else ""
        )
        rows.append(
            f"| {_md_cell(j.name)} | {overrides} | {j.status} | {_fmt_int(j.num_parameters)} | {val} "
            f"| {_fmt_ppl(j.test_ppl)} | {scores}{_fmt_int(j.tokens_per_sec)} | "
            f"{_fmt_time(j.wall_time_s)} |"
        )
    return "\n".join(rows)


def summary_lines(report: Report) -> list[str]:
    """Counts by status, the best job, Optuna's best parameters."""
    order = ["finished", "running", "interrupted", "failed", NOT_STARTED]
    counts: dict[str, int] = {}
    for j in sorted(report.jobs, key=lambda j: order.index(j.status) if j.status in order else 99):
        counts[j.status] = counts.get(j.status, 0) + 1
    lines = [f"{len(report.jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    best = report.best
    if best is not None:
        lines.append(
            f"best validation perplexity: {best.best_val_ppl:.3f}, job {best.name}"
            + (f" ({best.label})" if best.label else "")
        )
    scored = [j for j in report.jobs if j.best_val_bleu is not None]
    if scored:
        top = max(scored, key=lambda j: j.best_val_bleu or 0.0)
        lines.append(
            f"best validation BLEU: {top.best_val_bleu:.2f}, job {top.name}"
            + (f" ({top.label})" if top.label else "")
        )
    if report.optuna and "best_params" in report.optuna:
        params = " ".join(f"{k}={v}" for k, v in report.optuna["best_params"].items())
        lines.append(
            f"Optuna best ({OPTUNA_RESULTS}): value {report.optuna.get('best_value')}, {params}"
        )
    return lines


def markdown(report: Report, with_plot: bool = True) -> str:
    parts = [
        f"# Sweep report: {report.folder.name}",
        "",
        f"Folder: `{report.folder.resolve()}`",
        "",
    ]
    if report.common:
        parts += [f"Every job: {_md_overrides(report.common)}", ""]
    parts += [table(report), ""]
    parts += [f"{line}  " for line in summary_lines(report)] + [""]
    errors = [j for j in report.jobs if j.error and j.status != "finished"]
    if errors:
        parts += ["## Jobs that did not finish", ""]
        parts += [f"- job {j.name} ({j.status}): {_md_cell(j.error)}" for j in errors] + [""]
    if with_plot:
        parts += [
            f"![validation perplexity against training tokens and training time]({REPORT_PNG})",
            "",
        ]
    return "\n".join(parts)


def write_csv(report: Report, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for j in report.jobs:
            writer.writerow(
                {
                    "job": j.name,
                    "overrides": " ".join(j.varying),
                    "status": j.status,
                    "num_parameters": j.num_parameters,
                    "best_val_ppl": j.best_val_ppl,
                    "test_ppl": j.test_ppl,
                    "best_val_bleu": j.best_val_bleu,
                    "test_bleu": j.test_bleu,
                    "test_chrf": j.test_chrf,
                    "tokens_per_sec": j.tokens_per_sec,
                    "wall_time_s": j.wall_time_s,
                    "tokens_seen": j.tokens_seen,
                    "error": j.error,
                    "all_overrides": " ".join(j.overrides or []),
                }
            )


def write_report(folder: Path) -> tuple[Report, list[str]]:
    """Write report.md, report.csv and report.png into `folder`; return the report and any warnings."""
    report = build_report(folder)
    warnings: list[str] = []
    with_plot = True
    try:
        plot(report, folder / REPORT_PNG)
    except ImportError as err:
        with_plot = False
        warnings.append(
            f"{REPORT_PNG} not written: {err.name or 'matplotlib'} is missing "
            "(install the sweep extra: pip install -e '.[sweep]')"
        )
    (folder / REPORT_MD).write_text(markdown(report, with_plot=with_plot), encoding="utf-8")
    write_csv(report, folder / REPORT_CSV)
    return report, warnings
