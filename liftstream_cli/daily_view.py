"""An experiment's daily cumulative snapshots as a rich table: a row per UTC day.

Each row shows the units per variant as of the day's end, the sample-ratio p-value, and
per metric and treatment the fixed-horizon p-value over the always-valid sequential one
(the one to read when the results are watched day by day).
"""

from __future__ import annotations

from rich import box
from rich.table import Table

from schemas.results import DailyResults


def render_daily(daily: DailyResults) -> Table:
    variants = sorted({v.variant_key for day in daily.days for v in day.variants})
    comparisons = list(
        dict.fromkeys((m.metric, m.variant_key) for day in daily.days for m in day.metrics)
    )
    table = Table(
        title=f"{daily.experiment_key} · tenant {daily.tenant_id} · version "
        f"{daily.experiment_version} · cumulative by day (UTC)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("day")
    for variant in variants:
        table.add_column(f"units {variant}", justify="right")
    table.add_column("SRM p", justify="right")
    for metric, variant in comparisons:
        table.add_column(f"{metric}\n{variant}: p / seq p", justify="right")
    for day in daily.days:
        units = {v.variant_key: v.units for v in day.variants}
        found = {(m.metric, m.variant_key): m for m in day.metrics}
        cells = [day.day.isoformat(), *(f"{units.get(v, 0):,}" for v in variants)]
        cells.append(_p(day.sample_ratio_p_value))
        for key in comparisons:
            comparison = found.get(key)
            cells.append(
                "-"
                if comparison is None or comparison.p_value is None
                else f"{_p(comparison.p_value)} / {_p(comparison.sequential_p_value)}"
            )
        table.add_row(*cells)
    return table


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"
