"""What the experiment page shows, shaped from the results API's JSON without changing a
figure: one row per metric and treatment (the effect and its interval on the asked scale,
drawn as a bar on a shared axis), the banners (sample-ratio mismatch, warnings, pipeline
errors, health counts) and the plan's progress.

The raw values travel with the formatted ones (``data-*`` attributes in the templates), so
the page can be checked number for number against ``liftstream results --json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: How a verdict shows: an icon and a word besides the colour (colour is never the only sign).
VERDICTS = {
    "better": ("▲", "better", "good"),
    "worse": ("▼", "worse", "bad"),
    "inconclusive": ("●", "inconclusive", "neutral"),
    "not_computable": ("\N{EN DASH}", "not computable", "neutral"),
}
BAR_WIDTH = 180.0
SRM_SHIP_BLOCK_P = 0.001


@dataclass(frozen=True)
class Bar:
    """An interval drawn on the row's axis, in SVG user units of a ``BAR_WIDTH`` wide box."""

    low_x: float
    high_x: float
    estimate_x: float
    zero_x: float


@dataclass(frozen=True)
class MetricRow:
    comparison: dict[str, Any]
    effect: dict[str, Any] | None
    p_value: float | None
    adjusted_p_value: float | None
    sequential_p_value: float | None
    chance_to_win: float | None
    icon: str
    verdict_text: str
    tone: str
    bar: Bar | None

    @property
    def metric(self) -> str:
        return str(self.comparison["metric"])


def percent(value: float | None, digits: int = 2, signed: bool = True) -> str:
    if value is None:
        return "—"
    text = f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"
    return text


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits}g}"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") or "0"


def p_value(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.0001:
        return "< 0.0001"
    return f"{value:.4f}"


def effect_text(effect: dict[str, Any] | None, scale: str) -> str:
    if effect is None:
        return "—"
    if scale == "relative":
        return percent(effect["estimate"])
    return number(effect["estimate"])


def interval_text(effect: dict[str, Any] | None, scale: str) -> str:
    if effect is None:
        return ""
    if scale == "relative":
        return f"[{percent(effect['ci_low'])}, {percent(effect['ci_high'])}]"
    return f"[{number(effect['ci_low'])}, {number(effect['ci_high'])}]"


def _effect(comparison: dict[str, Any], scale: str) -> dict[str, Any] | None:
    return comparison.get("relative_effect" if scale == "relative" else "absolute_effect")


def _axis_half_width(effects: list[dict[str, Any]]) -> float:
    extent = max(
        (
            abs(value)
            for effect in effects
            for value in (effect["ci_low"], effect["ci_high"], effect["estimate"])
            if math.isfinite(value)
        ),
        default=0.0,
    )
    return extent * 1.1 if extent > 0 else 1.0


def _bar(effect: dict[str, Any] | None, half_width: float) -> Bar | None:
    if effect is None:
        return None

    def x(value: float) -> float:
        clipped = max(-half_width, min(half_width, value))
        return round((clipped + half_width) / (2 * half_width) * BAR_WIDTH, 2)

    return Bar(
        low_x=x(effect["ci_low"]),
        high_x=x(effect["ci_high"]),
        estimate_x=x(effect["estimate"]),
        zero_x=x(0.0),
    )


def metric_rows(scorecard: dict[str, Any]) -> list[MetricRow]:
    """One row per comparison. On the relative scale all rows share one axis (they are
    comparable); on the absolute scale each metric has its own (its own units)."""
    scale = scorecard.get("scale", "relative")
    comparisons = scorecard["metrics"]
    shared = _axis_half_width([e for c in comparisons if (e := _effect(c, scale)) is not None])
    rows = []
    for comparison in comparisons:
        effect = _effect(comparison, scale)
        if scale == "relative":
            half_width = shared
        else:
            half_width = _axis_half_width(
                [
                    e
                    for c in comparisons
                    if c["metric"] == comparison["metric"] and (e := _effect(c, scale))
                ]
            )
        icon, text, tone = VERDICTS.get(comparison["verdict"], ("?", comparison["verdict"], ""))
        sequential = comparison.get("sequential")
        bayesian = comparison.get("bayesian")
        rows.append(
            MetricRow(
                comparison=comparison,
                effect=effect,
                p_value=comparison.get("p_value"),
                adjusted_p_value=comparison.get("adjusted_p_value"),
                sequential_p_value=sequential["p_value"] if sequential else None,
                chance_to_win=bayesian["chance_to_beat_control"] if bayesian else None,
                icon=icon,
                verdict_text=text,
                tone=tone,
                bar=_bar(effect, half_width),
            )
        )
    return rows


@dataclass(frozen=True)
class Banner:
    tone: str  # "bad", "warn", "info"
    title: str
    text: str


def banners(scorecard: dict[str, Any]) -> list[Banner]:
    """What must be seen before the rows: SRM (blocks shipping), warnings, what the pipeline
    could not process, and whether the sequential test may stop."""
    found: list[Banner] = []
    srm = scorecard["sample_ratio"]
    if srm.get("srm_detected"):
        found.append(
            Banner(
                "bad",
                "Sample ratio mismatch: do not ship",
                f"The units per variant differ from the designed split (p = "
                f"{p_value(srm.get('p_value'))}, below {srm.get('threshold')}). The "
                "assignment or the logging is broken; no result of this experiment can be "
                "trusted until it is found.",
            )
        )
    for warning in scorecard.get("warnings", []):
        found.append(Banner("warn", "Warning", str(warning)))
    for error in scorecard.get("errors", []):
        found.append(
            Banner("bad", f"Not processed ({error['stage']}): {error['subject']}", error["reason"])
        )
    if scorecard.get("may_stop"):
        found.append(
            Banner("info", "May stop", scorecard.get("stop_reason") or "The test is decided.")
        )
    return found


def health_banners(health: dict[str, Any]) -> list[Banner]:
    """The pipeline's counts that threaten the figures: multiple exposures, no traffic,
    missing (refused) data."""
    found: list[Banner] = []
    several = health.get("units_in_several_variants", 0)
    if several:
        found.append(
            Banner(
                "warn",
                "Multiple exposures",
                f"{several} units saw more than one variant and are left out.",
            )
        )
    if health.get("empty_raw_log"):
        found.append(Banner("warn", "No traffic", "No exposure of this experiment arrived yet."))
    rejected = health.get("tenant_rejected", 0)
    if rejected:
        found.append(
            Banner(
                "warn",
                "Missing data",
                f"{rejected} of the tenant's messages were refused (see Dead letters).",
            )
        )
    return found


def ship_blocked(scorecard: dict[str, Any]) -> bool:
    srm = scorecard["sample_ratio"]
    return bool(srm.get("srm_detected")) or not scorecard.get("trustworthy", True)


@dataclass(frozen=True)
class Progress:
    units: int
    planned: int | None
    fraction: float | None
    source: str | None
    basis: str | None


def progress(scorecard: dict[str, Any]) -> Progress:
    planned = scorecard.get("planned_units")
    units = int(scorecard["total_units"])
    return Progress(
        units=units,
        planned=planned,
        fraction=None if not planned else min(1.0, units / planned),
        source=scorecard.get("planned_units_source"),
        basis=scorecard.get("planned_units_basis"),
    )


def started_at(history: list[dict[str, Any]]) -> datetime | None:
    """When the experiment first ran: its first change that left it running."""
    for entry in history:
        status_changes = [c for c in entry.get("diff", []) if c.get("field") == "status"]
        running = any(c.get("after") == "running" for c in status_changes)
        created_running = entry["type"].endswith("Defined") and entry.get("version") == 1
        if running or (created_running and not status_changes):
            return datetime.fromisoformat(entry["occurred_at"])
    return None


def days_running(history: list[dict[str, Any]], status: str, now: datetime | None = None) -> int:
    start = started_at(history)
    if start is None or status == "draft":
        return 0
    return max(0, ((now or datetime.now(UTC)) - start).days)


DECISIONS = {
    "advance": ("▲", "advance", "good"),
    "complete": ("✔", "complete", "good"),
    "hold": ("❚❚", "hold", "neutral"),
    "inconclusive": ("●", "inconclusive", "neutral"),
    "rollback": ("▼", "roll back", "bad"),
}


def rollout_timeline(
    state: dict[str, Any], decisions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The controller's decisions (with their evidence) and people's changes (plans
    applied, approvals, pauses...) in the order the control topic holds them, newest
    first."""
    entries = [
        {
            "kind": "decision",
            "offset": d["offset"],
            "entry": d,
            "look": DECISIONS.get(d["decision"], ("?", d["decision"], "neutral")),
        }
        for d in decisions
    ]
    entries += [
        {"kind": "change", "offset": c["offset"], "entry": c, "look": None}
        for c in state.get("changes", [])
    ]
    return sorted(entries, key=lambda item: item["offset"], reverse=True)
