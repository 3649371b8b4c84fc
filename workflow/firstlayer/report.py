"""The HTML pages of the report beside its figures: the replication table and the run's configuration, each a
standalone page (inline style, no scripts, nothing fetched) that `snakemake --report` embeds."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from firstlayer.replication import verdict

#: The columns of the replication table a page shows, in order ('holds' last, coloured).
REPLICATION_COLUMNS = ("claim", "paper", "condition", "measured", "criterion", "holds")

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } p { max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.yes { background: #e5f5e0; } td.no { background: #fde0dd; } td.not-run { background: #f0f0f0; color: #666; }
td.undecided, td.not-informative { background: #fff7d6; } td.not-applicable { background: #f0f0f0; color: #666; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 1em; font-size: 0.85em; overflow-x: auto; }
"""


def html_page(title: str, body: str) -> str:
    """A standalone HTML page (inline style, no scripts, no external resources)."""
    title = html.escape(title)
    head = f'<meta charset="utf-8">\n<title>{title}</title>\n<style>{PAGE_STYLE}</style>'
    page = f"<head>\n{head}\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>"
    return f'<!DOCTYPE html>\n<html lang="en">\n{page}\n</html>\n'


def holds_cell(value: Any) -> tuple[str, str]:
    """A row's 'holds' or verdict word as (text, CSS class): a ``replication.VERDICTS`` word."""
    text = verdict(value)
    return text, text.replace(" ", "-")


def replication_html(table: pd.DataFrame) -> str:
    """The replication table (claim, paper, condition, measured, criterion, holds) as an HTML page, one row per
    claim and condition, 'holds' coloured, with how many of the tested claims hold."""
    missing = [c for c in REPLICATION_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"replication table lacks columns {missing}")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in REPLICATION_COLUMNS)
    body = []
    words = table["verdict"] if "verdict" in table else table["holds"]
    for row, word in zip(table.itertuples(index=False), words, strict=True):
        text, css = holds_cell(word)
        cells = "".join(f"<td>{html.escape(str(getattr(row, c)))}</td>" for c in REPLICATION_COLUMNS[:-1])
        body.append(f'<tr>{cells}<td class="{css}">{text}</td></tr>')
    said = [holds_cell(v)[0] for v in words]
    held, failed = said.count("yes"), said.count("no")
    intro = (
        f"<p>{held} of {held + failed} decided rows hold on this run; {len(said) - held - failed} rows are undecided, "
        "not informative, not applicable or not run by this grid. Every number comes from the run's tables.</p>"
    )
    table_html = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
    return html_page("Replication of Chowers & Weiss (ICML 2023) on this run", intro + "\n" + table_html)


def configuration_html(config: Mapping[str, Any], sources: Mapping[str, str], config_hash: str) -> str:
    """The run's configuration as an HTML page: the validated configuration with every default filled in, and
    the text of each config file as given (``sources``: path -> text)."""
    parts = [
        f"<p>Validated configuration (defaults filled in), hash <code>{html.escape(config_hash)}</code>.</p>",
        f"<pre>{html.escape(yaml.safe_dump(dict(config), sort_keys=False))}</pre>",
    ]
    for path, text in sources.items():
        parts.append(f"<h2>{html.escape(path)} (as given)</h2>\n<pre>{html.escape(text)}</pre>")
    return html_page("Configuration of this run", "\n".join(parts))
