"""``GET /v1/tenants/{tenant}/experiments/{key}/daily``: an experiment's daily cumulative
figures, for plots over time and sequential tests.

Each day (UTC) gives per variant the units and excluded units as of the day's end and
the Σx, Σx² of the experiment's metric events (``analytics.daily``, recomputed from the
raw exposures and outcomes, so late events land on their own day), and the scorecard of
those cumulative figures reduced to what a plot needs: per metric and treatment the
p-value, adjusted p-value, always-valid sequential p-value and effect, and the
sample-ratio p-value. All days are scored in one vectorised pass
(``analytics.scorecard.scorecard_documents``). Metrics the stream does not keep per event
(mean, ratio, capped, windowed, CUPED) have no per-day figures: their comparisons carry
the scorecard's reason instead.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from analytics import queries
from analytics.attribution import metric_events
from analytics.daily import DayFigures, daily_figures, first_exposure_day
from analytics.scorecard import ScorecardInput, scorecard_documents
from analytics.store import AnalyticsStore
from schemas.experiment import Experiment
from schemas.identifiers import Key, TenantId
from schemas.limits import MAX_DAILY_DAYS, QUERY_BUDGET_S
from schemas.results import CellStats, DailyResults, DayResults, MetricDay, VariantDay
from services.http_auth import ReaderKey
from services.results.read_slots import ReadSlots

__all__ = ["daily_router"]


def _variant_day(figures: DayFigures, variant: str) -> VariantDay:
    return VariantDay(
        variant_key=variant,
        units=figures.units.get(variant, 0),
        excluded_units=figures.excluded.get(variant, 0),
        stats=[
            CellStats(event=event, aggregation=aggregation, sum=total, sum_sq=total_sq)
            for (cell_variant, event, aggregation), (total, total_sq) in sorted(
                figures.stats.items()
            )
            if cell_variant == variant
        ],
    )


def _metric_day(comparison: dict[str, Any]) -> MetricDay:
    sequential = comparison.get("sequential")
    effect = comparison.get("absolute_effect")
    return MetricDay(
        metric=comparison["metric"],
        variant_key=comparison["treatment"]["variant_key"],
        p_value=comparison["p_value"],
        adjusted_p_value=comparison.get("adjusted_p_value"),
        sequential_p_value=sequential["p_value"] if sequential else None,
        absolute_effect=effect["estimate"] if effect else None,
        absolute_ci_low=effect["ci_low"] if effect else None,
        absolute_ci_high=effect["ci_high"] if effect else None,
        significant=comparison["significant"],
        reason=comparison.get("reason"),
    )


def daily_results(
    tenant_id: str, experiment: Experiment, day_figures: list[DayFigures]
) -> DailyResults:
    """The daily figures with each day's scorecard figures."""
    variants = [variant.key for variant in experiment.variants]
    extra = sorted({v for s in day_figures for v in s.units} - set(variants))
    documents = scorecard_documents(
        [
            ScorecardInput(
                tenant_id,
                experiment,
                {variant: figures.units.get(variant, 0) for variant in variants},
                figures.stats,
                excluded_units=figures.excluded_units,
            )
            for figures in day_figures
        ],
        scale="absolute",  # the days show absolute effects: their p-values match them
    )
    return DailyResults(
        tenant_id=tenant_id,
        experiment_key=experiment.key,
        experiment_version=experiment.version,
        days=[
            DayResults(
                day=figures.day,
                total_units=sum(figures.units.values()),
                excluded_units=figures.excluded_units,
                variants=[_variant_day(figures, variant) for variant in variants + extra],
                sample_ratio_p_value=document["sample_ratio"]["p_value"],
                metrics=[_metric_day(comparison) for comparison in document["metrics"]],
            )
            for figures, document in zip(day_figures, documents, strict=True)
        ],
    )


def clamp_reason(
    day_figures: list[DayFigures],
    first_day: date | None,
    since: date | None,
    through: date | None,
    max_days: int = MAX_DAILY_DAYS,
) -> str | None:
    """Why the days shown are fewer than those asked for; None when none were cut.

    ``first_day`` is the day of the experiment's first exposure."""
    if not day_figures:
        return None
    reasons = []
    last = day_figures[-1].day
    if through is not None and through > last:
        reasons.append(f"no event after {last.isoformat()}: the days end there, not at {through}")
    if len(day_figures) == max_days:
        earlier = since is None and first_day is not None and day_figures[0].day > first_day
        later = since is not None and (through is None or last < through)
        if earlier or later:
            reasons.append(
                f"at most {max_days} days an answer: "
                + (
                    f"the last ones are shown (the data start on {first_day}; ask with "
                    "since= for earlier days)"
                    if earlier
                    else f"ask again with since={date.fromordinal(last.toordinal() + 1)} "
                    "for the next ones"
                )
            )
    return "; ".join(reasons) or None


Since = Annotated[
    date | None,
    Query(
        description="First day shown (UTC); default: the first exposure's day, or the "
        f"last {MAX_DAILY_DAYS} days. Earlier events still count in the figures."
    ),
]
Through = Annotated[
    date | None,
    Query(description="Last day (UTC); default, and at most: the last day with events."),
]


def daily_router(
    store: AnalyticsStore,
    query_budget_s: float = QUERY_BUDGET_S,
    read_slots: ReadSlots | None = None,
) -> APIRouter:
    """The route over ``store``, for a read key of the path's tenant; its queries may run
    ``query_budget_s`` seconds, holding one of the tenant's ``read_slots``."""
    router = APIRouter()
    slots = read_slots or ReadSlots()

    @router.get("/v1/tenants/{tenant}/experiments/{key}/daily")
    def get_daily(
        tenant: TenantId,
        key: Key,
        caller: ReaderKey,
        since: Since = None,
        through: Through = None,
    ) -> DailyResults:
        """Daily cumulative units, metric sums and scorecard p-values of the experiment:
        at most MAX_DAILY_DAYS days, within the data's span (``clamped`` says what was
        cut)."""
        with slots.slot(tenant), store.cursor(query_budget_s) as cursor:
            view = queries.experiment(cursor, tenant, key)
            if view is None:
                raise HTTPException(
                    status_code=404,
                    detail=f"experiment '{key}' is not defined for tenant '{tenant}' "
                    "(no control event defining it has been loaded)",
                )
            day_figures = daily_figures(
                cursor,
                tenant,
                key,
                events=metric_events(view.experiment),
                since=since,
                through=through,
            )
            first_day = first_exposure_day(cursor, tenant, key) if day_figures else None
        results = daily_results(tenant, view.experiment, day_figures)
        clamped = clamp_reason(day_figures, first_day, since, through)
        return results.model_copy(update={"clamped": clamped})

    return router
