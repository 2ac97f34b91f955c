"""e2e reports: tests add lines (timings) and fault-run records; the terminal summary
(tests/conftest.py, which also gathers them from pytest-xdist's workers) prints them, so they
show in a plain ``pytest -q`` run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class FaultRecord:
    """One fault run: what was done, how many writes were acknowledged, how many
    acknowledged objects (or delivered events) were lost."""

    fault: str
    writes_acknowledged: int
    """Writes the API acknowledged during the run."""
    objects_lost: int
    """Acknowledged writes missing or wrong afterwards, events an informer missed, pods bound
    twice or over their ReplicaSet's count, pods restarted or duplicated: must be 0."""
    recovery_seconds: float = 0.0
    """From the fault to the first sign of recovery (an acknowledged write, a takeover, the
    kubelet back)."""
    acked_in_window: int | None = None
    """Writes acknowledged between the fault and recovery + 2 s (None: not measured)."""
    note: str = ""


@dataclass
class E2EReport:
    lines: list[str] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


REPORT_KEY = pytest.StashKey[E2EReport]()


def _report(config: pytest.Config) -> E2EReport:
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        report = E2EReport()
        config.stash[REPORT_KEY] = report
    return report


@pytest.fixture(scope="session")
def e2e_report(pytestconfig: pytest.Config) -> E2EReport:
    return _report(pytestconfig)


def fault_table(faults: list[FaultRecord]) -> list[str]:
    """One row per fault: runs, sums of writes and losses, the slowest recovery."""
    rows: dict[str, list[FaultRecord]] = {}
    for record in faults:
        rows.setdefault(record.fault, []).append(record)
    header = (f"{'fault':<46}{'runs':>5}{'writes acked':>14}{'in fault window':>17}"
              f"{'objects lost':>14}{'max recovery':>14}  note")
    lines = [header, "-" * len(header)]
    for fault, records in rows.items():
        acked = sum(r.writes_acknowledged for r in records)
        windows = [r.acked_in_window for r in records if r.acked_in_window is not None]
        window = str(sum(windows)) if windows else "-"
        lost = sum(r.objects_lost for r in records)
        slowest = max(r.recovery_seconds for r in records)
        notes = "; ".join(dict.fromkeys(r.note for r in records if r.note))
        lines.append(f"{fault:<46}{len(records):>5}{acked:>14}{window:>17}{lost:>14}"
                     f"{slowest:>13.1f}s  {notes}")
    return lines


def report_as_data(report: E2EReport) -> dict[str, Any]:
    """The report as plain data (what a pytest-xdist worker can hand to the controller)."""
    return dataclasses.asdict(report)


def merge_report_data(report: E2EReport, data: dict[str, Any]) -> None:
    report.lines.extend(data.get("lines", []))
    report.faults.extend(FaultRecord(**fault) for fault in data.get("faults", []))


def report_of(config: pytest.Config) -> E2EReport:
    return _report(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: the report goes to the controller, which prints it."""
    workeroutput = getattr(session.config, "workeroutput", None)
    report = session.config.stash.get(REPORT_KEY, None)
    if workeroutput is not None and report is not None:
        workeroutput["e2e_report"] = report_as_data(report)
