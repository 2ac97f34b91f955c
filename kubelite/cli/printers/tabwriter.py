"""Go's text/tabwriter, as kubectl lays out its tables and describe text."""

from __future__ import annotations

from collections.abc import Sequence


def tabwrite(lines: Sequence[str], minwidth: int = 6, padding: int = 3) -> list[str]:
    """Go's text/tabwriter: tab-terminated cells aligned per column block.

    A column block is a run of consecutive lines that have a cell in that column; the last
    cell of a line (after its last tab) is not part of any column and is never padded.
    kubectl's tables use minwidth 6 / padding 3, its describe output 0 / 2.
    """
    cells = [line.split("\t") for line in lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for i in range(start, end):
            row = cells[i]
            text = []
            for j, cell in enumerate(row):
                text.append(cell.ljust(widths[j]) if j < len(widths) and j < len(row) - 1
                            else cell)
            out.append("".join(text))

    def format_block(start: int, end: int) -> None:
        column = len(widths)
        this = start
        while this < end:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            write_lines(start, this)
            start = this
            width = minwidth
            while this < end and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(start, this)
            widths.pop()
            start = this
        write_lines(start, end)

    format_block(0, len(cells))
    return out


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    return tabwrite(["\t".join(r) for r in rows])
