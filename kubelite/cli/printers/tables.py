"""What ``klctl get`` prints: kubectl's columns per kind (and -o wide), laid out as kubectl
lays them out. The columns and cells themselves are :mod:`kubelite.api.columns`, which the API
server's Table responses use too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.cells import format_labels
from kubelite.api.columns import columns_for, pod_status
from kubelite.api.registry import ResourceType
from kubelite.cli.printers.formats import resource_name
from kubelite.cli.printers.tabwriter import render_table

__all__ = ["Table", "pod_status"]


class Table:
    """Header and rows of one kind's table, in kubectl's layout."""

    def __init__(
        self,
        rtype: ResourceType,
        *,
        wide: bool = False,
        namespace_column: bool = False,
        show_labels: bool = False,
        show_kind: bool = False,
    ) -> None:
        self.rtype = rtype
        self.wide = wide
        self.namespace_column = namespace_column
        self.show_labels = show_labels
        self.show_kind = show_kind
        kind = columns_for(rtype.kind)
        self._row = kind.row
        self._shown = [i for i, c in enumerate(kind.columns) if wide or c.priority == 0]
        headers = [kind.columns[i].header for i in self._shown]
        if namespace_column:
            headers.insert(0, "NAMESPACE")
        if show_labels:
            headers.append("LABELS")
        self.headers = headers
        self._widths: list[int] = []

    def row(self, obj: Message, now: dt.datetime) -> list[str]:
        all_cells = self._row(obj, now)
        cells = [all_cells[i] for i in self._shown]
        if self.show_kind and self.rtype.kind != "Event":
            cells[0] = resource_name(self.rtype, cells[0])
        if self.namespace_column:
            cells.insert(0, m.meta(obj).namespace)
        if self.show_labels:
            cells.append(format_labels(m.meta(obj).labels))
        return cells

    def render(
        self, objects: Iterable[Message], now: dt.datetime, headers: bool = True
    ) -> list[str]:
        rows = [self.row(o, now) for o in objects]
        lines = render_table(([self.headers] if headers else []) + rows)
        self._remember([self.headers, *rows])
        return lines

    def _remember(self, rows: Sequence[Sequence[str]]) -> None:
        for r in rows:
            for i, cell in enumerate(r):
                if i >= len(self._widths):
                    self._widths.append(6)
                self._widths[i] = max(self._widths[i], len(cell) + 3)

    def render_one(self, row: Sequence[str]) -> str:
        """A watch line, padded like the table printed before it (widths only grow)."""
        self._remember([row])
        return "".join(
            cell.ljust(self._widths[i]) if i < len(row) - 1 else cell
            for i, cell in enumerate(row)
        )
