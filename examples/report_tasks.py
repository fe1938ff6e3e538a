"""The same reports distributed with fleet: only the decorator lines are new.

Compare with `reports_original.py`: bodies, signatures and return types are unchanged.
`split_periods` and `concat` tell `generate_reports` how to fan one call out into one
invocation per period and put the per-period results back together, in order.
"""

from __future__ import annotations

from examples.reports_original import PERIODS, build_report
from fleet import Fleet

app = Fleet()


def split_periods(args: dict[str, object]) -> list[tuple[list[str]]]:
    periods = args["periods"]
    assert isinstance(periods, list)
    return [([period],) for period in periods]


def concat(chunks: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    return [report for chunk in chunks for report in chunk]


@app.direct_task
def generate_report(period: str) -> dict[str, object]:
    return build_report(period)


@app.direct_task(parallel_func=split_periods, aggregate_func=concat)
def generate_reports(periods: list[str]) -> list[dict[str, object]]:
    return [build_report(p) for p in periods]


__all__ = ["PERIODS", "app", "generate_report", "generate_reports"]
