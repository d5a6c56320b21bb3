"""report.md and a self-contained report.html (inline SVG bars, no scripts or outside files)
for a bench run, with a link to each episode's trajectory view."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from urllib.parse import quote

from core.files import replace_text
from core.text import one_line
from runtime.bench.jobs import EpisodeResult
from runtime.bench.summary import Rate, Summary

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
VIEW = "view.html"


def write_reports(out: Path, results: list[EpisodeResult], summary: Summary) -> None:
    replace_text(out / REPORT_MD, markdown(results, summary))
    replace_text(out / REPORT_HTML, html(results, summary))


def _pct(rate: Rate) -> str:
    return f"{rate.success_rate * 100:.0f}%"


def _rate_rows(rates: dict[str, Rate]) -> list[list[str]]:
    return [[name, str(r.episodes), _pct(r), f"{r.mean_reward:g}", str(r.failures), str(r.errors),
             f"{r.mean_steps:g}"] for name, r in rates.items()]


# Mean reward beside success: a task may give part of its reward without success (a message to
# the right person without the number; a MiniWoB page's partial credit).
_RATE_HEAD = ["", "episodes", "success", "mean reward", "failures", "errors", "mean steps"]


def _latency_rows(summary: Summary) -> list[list[str]]:
    """Per step phase, and the whole episode (env start-up included) as the last row."""
    rows = [[p, str(v.samples), f"{v.p50_ms:g}", f"{v.p95_ms:g}"]
            for p, v in summary.latency.items()]
    if summary.episode is not None:
        e = summary.episode
        rows.append(["whole episode", f"{e.samples} episodes", f"{e.p50_ms:g}", f"{e.p95_ms:g}"])
    return rows


def markdown(results: list[EpisodeResult], summary: Summary) -> str:
    def table(head: list[str], rows: list[list[str]]) -> str:
        cells = [head, ["---"] * len(head), *rows]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                         for row in cells)

    o = summary.overall
    parts = [
        "# Bench report", "",
        f"{o.episodes} of {summary.planned} episodes: {o.successes} succeeded ({_pct(o)}), "
        f"{o.failures} failed, {o.errors} runtime errors; {o.mean_steps:g} steps on average.", "",
        "## Suites", "", table(["suite", *_RATE_HEAD[1:]], _rate_rows(summary.suites)), "",
        "## Tasks", "", table(["task", *_RATE_HEAD[1:]], _rate_rows(summary.tasks)), "",
        "## Tags", "", table(["tag", *_RATE_HEAD[1:]], _rate_rows(summary.tags)), "",
        "## Latency (ms)", "",
        table(["phase", "steps", "p50", "p95"], _latency_rows(summary)), "",
        "## Episodes", "",
        table(["task", "seed", "outcome", "steps", "reason", "trajectory"],
              [[r.task, str(r.seed), r.outcome, str(r.steps),
                _literal(one_line(_why(r), 120)),
                f"[view]({_href(r.trajectory)})" if r.trajectory else "-"]
               for r in results]), "",
    ]
    return "\n".join(parts)


def _why(r: EpisodeResult) -> str:
    """How the episode ended, in words: the runtime's error, else the check's reason."""
    return r.error or (r.score.reason if r.score else r.reason)


def _href(trajectory: str) -> str:
    """The link to a trajectory's view: a path, made a URL (a merged run's links pass through
    the shards' folders, whose names may hold a space, '#' or '?')."""
    return quote(f"{trajectory}/{VIEW}")


def _literal(text: str) -> str:
    """Text in a markdown cell shown as written: a check's reason may quote the model's answer,
    which must neither render as HTML nor as emphasis, code or a link."""
    return re.sub(r"([\\`*_\[\]~])", r"\\\1", escape(text, quote=False))


def _bars(title: str, rates: dict[str, Rate]) -> str:
    """A horizontal bar per entry: its success rate, with the errors' share beside it."""
    label_w, bar_w, row_h = 260, 360, 22
    height = row_h * len(rates) + 8
    rows = []
    for i, (name, r) in enumerate(rates.items()):
        y = 4 + i * row_h
        ok = bar_w * r.success_rate
        err = bar_w * (r.errors / r.episodes if r.episodes else 0)
        rows.append(
            f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{escape(name)}</text>"
            f"<rect x='{label_w}' y='{y + 3}' width='{bar_w}' height='{row_h - 6}' "
            f"class='track'/>"
            f"<rect x='{label_w}' y='{y + 3}' width='{ok:.1f}' height='{row_h - 6}' class='ok'>"
            f"<title>{escape(name)}: {_pct(r)} of {r.episodes}</title></rect>"
            f"<rect x='{label_w + ok:.1f}' y='{y + 3}' width='{err:.1f}' height='{row_h - 6}' "
            f"class='err'/>"
            f"<text x='{label_w + bar_w + 6}' y='{y + 15}'>{_pct(r)} "
            f"({r.successes}/{r.episodes})</text>"
        )
    return (f"<h2>{escape(title)}</h2><svg class='chart' role='img' "
            f"aria-label='{escape(title)}' width='{label_w + bar_w + 110}' height='{height}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(rows)}</svg>")


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
            + "</tbody></table>")


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:14px}
svg.chart text{font-size:13px;dominant-baseline:auto}
rect.track{fill:#eee} rect.ok{fill:#2e7d32} rect.err{fill:#c62828}
.success{color:#2e7d32} .failure{color:#b26a00} .error{color:#c62828}
"""


def html(results: list[EpisodeResult], summary: Summary) -> str:
    o = summary.overall
    episodes = [
        [escape(r.task), str(r.seed), f"<span class='{r.outcome}'>{r.outcome}</span>",
         str(r.steps), escape(r.goal),
         escape(one_line(_why(r), 200)),
         f"<a class='trajectory' href='{escape(_href(r.trajectory))}'>view</a>"
         if r.trajectory else "-"]
        for r in results
    ]
    body = [
        "<h1>Bench report</h1>",
        f"<p id='overall'>{o.episodes} of {summary.planned} episodes: {o.successes} succeeded "
        f"({_pct(o)}), {o.failures} failed, {o.errors} runtime errors; {o.mean_steps:g} steps "
        f"on average.</p>",
        _bars("Success per suite", summary.suites),
        _bars("Success per task", summary.tasks),
        _bars("Success per tag", summary.tags),
        "<h2>Tasks</h2>", _html_table(["task", *_RATE_HEAD[1:]],
                                      [[escape(c) for c in row] for row in _rate_rows(summary.tasks)]),
        "<h2>Latency (ms)</h2>",
        _html_table(["phase", "steps", "p50", "p95"], _latency_rows(summary)),
        "<h2>Episodes</h2>",
        _html_table(["task", "seed", "outcome", "steps", "goal", "reason", "trajectory"],
                    episodes),
    ]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Bench report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
