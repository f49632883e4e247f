"""How numbers are written in tables and sentences (one rule for the report, the model's tables and the terminal)."""
from __future__ import annotations

import html


def short(value: float) -> str:
    """Three significant digits; whole numbers with thousands separators from 100 up ('4,830', '12.3', '0.0457')."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def esc(value) -> str:
    """A value as HTML text ('' for None)."""
    return html.escape("" if value is None else str(value))


def html_table(header: list[str], rows: list[list[str]], numeric_from: int = 0) -> str:
    """A plain HTML table; cells from column `numeric_from` on are right-aligned numbers (class n)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i >= numeric_from else ''}>{esc(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
