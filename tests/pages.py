"""Reading the dashboard's pages in tests: a table's rows as the text of their cells."""

from __future__ import annotations

import re


def table_rows(html: str) -> list[list[str]]:
    """Each body row of the page's tables, as its cells' text (tags dropped, spaces folded)."""
    rows = re.findall(r"<tr>.*?</tr>", html, re.S)
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td.*?</td>", row, re.S)
        ]
        for row in rows
        if "<td" in row
    ]


def runner_row(html: str, name: str) -> list[str]:
    """The runners table's row of the runner called ``name`` (its name cell first)."""
    found = [row for row in table_rows(html) if row[0].split(" ")[0] == name]
    assert len(found) == 1, html
    return found[0]
