"""Sales reports, the plain-Python way: the code before fleet (the baseline)."""

from __future__ import annotations

import time
from hashlib import md5

PERIODS = ["Q1-2025", "Q2-2025", "Q3-2025", "Q4-2025", "Q1-2026"]


def build_report(period: str) -> dict[str, object]:
    """Pretend to query and aggregate for half a second, then return the figures."""
    time.sleep(0.5)
    seed = int(md5(period.encode()).hexdigest()[:8], 16)
    revenue = 50_000 + seed % 950_000
    orders = 100 + seed % 9_900
    return {
        "period": period,
        "revenue": revenue,
        "orders": orders,
        "avg_order_value": round(revenue / orders, 2),
    }


def generate_report(period: str) -> dict[str, object]:
    return build_report(period)


def generate_reports(periods: list[str]) -> list[dict[str, object]]:
    return [build_report(p) for p in periods]
