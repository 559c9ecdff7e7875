"""A scorecard as rich text: a header, the sample-ratio check, a row per metric and treatment.

Each row shows the treatment over its control (units, means), the absolute and the
relative effect with their confidence intervals in brackets, the p-value over the
corrected one (``adj``), and the verdict over the Bayesian chance to beat the control
(``win``) and the always-valid sequential test's call (``stop`` or ``wait``). The column
headers and the line under the table name the scale of every figure: p, adj, the
adjusted interval (the third line of the headline effect), win and stop/wait are all on
the scorecard's scale. Why a figure is missing is noted under the table with its code,
then the sequential tests' tuning and whether the experiment may be stopped; the table
fits 100 columns.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from schemas.experiment import Aggregation
from schemas.results import Interval, MetricComparison, Scorecard

_VERDICT_STYLES = {
    "better": ("better", "bold green"),
    "worse": ("worse", "bold red"),
    "inconclusive": ("inconclusive", "yellow"),
    "not_computable": ("n/a", "dim"),
}


def render_scorecard(scorecard: Scorecard) -> RenderableType:
    parts: list[RenderableType] = [
        Text.assemble(
            (scorecard.experiment_key, "bold"),
            f"  tenant {scorecard.tenant_id} · version {scorecard.experiment_version}"
            f" · {scorecard.status} · {scorecard.total_units:,} units"
            f" ({scorecard.excluded_units:,} excluded: saw several variants)"
            f" · {scorecard.confidence_level:.0%} confidence",
        ),
        _sample_ratio_line(scorecard),
        _metrics_table(scorecard),
        Text(
            f"{_SCALES[scorecard.scale]}: p (fixed-horizon), adj "
            f"({_CORRECTIONS[scorecard.correction]}, per metric role) and its interval, win "
            "(chance to beat control), stop/wait (always-valid sequential test)",
            style="dim",
        ),
    ]
    parts.extend(
        Text(f"{m.metric} {m.treatment.variant_key}: {m.reason} [{m.reason_code}]", style="dim")
        if m.reason_code
        else Text(f"{m.metric} {m.treatment.variant_key}: {m.reason}", style="dim")
        for m in scorecard.metrics
        if m.reason
    )
    if scorecard.planned_units is not None:
        basis = f": {scorecard.planned_units_basis}" if scorecard.planned_units_basis else ""
        parts.append(
            Text(
                f"sequential tests tuned to {scorecard.planned_units:,} planned units "
                f"({scorecard.planned_units_source}{basis})",
                style="dim",
            )
        )
    parts.append(_stopping_line(scorecard))
    parts.extend(Text(f"warning: {warning}", style="yellow") for warning in scorecard.warnings)
    return Group(*parts)


_SCALES = {
    "relative": "relative scale (treatment / control - 1)",
    "absolute": "absolute scale (treatment - control)",
}
_CORRECTIONS = {
    "holm": "Holm-adjusted",
    "bonferroni": "Bonferroni-adjusted",
    "benjamini_hochberg": "Benjamini-Hochberg-adjusted",
    "none": "not adjusted",
}


def _stopping_line(scorecard: Scorecard) -> Text:
    reason = f": {scorecard.stop_reason}" if scorecard.stop_reason else ""
    if scorecard.may_stop:
        return Text(f"may stop now{reason}", style="bold")
    return Text(f"keep running{reason}")


def _sample_ratio_line(scorecard: Scorecard) -> Text:
    check = scorecard.sample_ratio
    observed = ", ".join(
        f"{variant} {units:,} (expected {check.expected_share.get(variant, 0):.0%})"
        for variant, units in check.observed_units.items()
    )
    if check.p_value is None:
        return Text(f"sample ratio: {observed}; not tested: {check.reason or 'no data'}", "dim")
    if check.srm_detected:
        return Text(
            f"SAMPLE RATIO MISMATCH: {observed}; p = {_p(check.p_value)} < {check.threshold}."
            " The assignment or the logging is broken: do not trust these results.",
            "bold red",
        )
    return Text(f"sample ratio ok: {observed}; p = {_p(check.p_value)}", "green")


def _metrics_table(scorecard: Scorecard) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    table.add_column("units", justify="right")
    table.add_column("mean", justify="right")
    relative = scorecard.scale == "relative"
    table.add_column("absolute" if relative else "absolute*", justify="right")
    table.add_column("relative*" if relative else "relative", justify="right")
    short = "rel" if relative else "abs"
    table.add_column(f"p {short}\nadj", justify="right", no_wrap=True)
    table.add_column("verdict\nwin", no_wrap=True)
    for comparison in scorecard.metrics:
        absolute_text = _interval(comparison.absolute_effect, comparison.aggregation)
        relative_text = _interval(comparison.relative_effect, None)
        adjusted = _adjusted(comparison, relative)
        if relative:
            relative_text += adjusted
        else:
            absolute_text += adjusted
        label, style = _VERDICT_STYLES[comparison.verdict]
        table.add_row(
            Text.assemble(comparison.metric, "\n", (comparison.role, "dim")),
            Text.assemble(
                comparison.treatment.variant_key,
                "\n",
                (comparison.control.variant_key, "dim"),
            ),
            f"{comparison.treatment.units:,}\n{comparison.control.units:,}",
            f"{_value(comparison.treatment.mean, comparison.aggregation)}\n"
            f"{_value(comparison.control.mean, comparison.aggregation)}",
            absolute_text,
            relative_text,
            Text.assemble(_p(comparison.p_value), "\n", (_p(comparison.adjusted_p_value), "dim")),
            Text.assemble((label, style), "\n", (_outlook(comparison), "dim")),
            end_section=True,
        )
    return table


def _adjusted(comparison: MetricComparison, relative: bool) -> str:
    """The adjusted interval on its own line, e.g. ``adj [+1.2%, +9.8%]``."""
    interval = comparison.adjusted_effect
    if interval is None or comparison.adjusted_confidence_level is None:
        return ""
    if relative:
        low, high = _value(interval.ci_low, None), _value(interval.ci_high, None)
    elif comparison.aggregation is Aggregation.CONVERSION:
        low, high = f"{interval.ci_low * 100:+.2f}", f"{interval.ci_high * 100:+.2f}"
    else:
        low, high = f"{interval.ci_low:+,.3f}", f"{interval.ci_high:+,.3f}"
    return f"\nadj [{low}, {high}]"


def _outlook(comparison: MetricComparison) -> str:
    """Chance to beat control and the sequential call, e.g. ``win 97% stop``."""
    bayesian, sequential = comparison.bayesian, comparison.sequential
    chance = "n/a" if bayesian is None else _chance(bayesian.chance_to_beat_control)
    call = "" if sequential is None else (" stop" if sequential.may_stop else " wait")
    return f"win {chance}{call}"


def _chance(chance: float) -> str:
    """A percentage that never rounds a near-certainty to 0% or 100%."""
    if chance < 0.01:
        return "<1%"
    if chance > 0.99:
        return ">99%"
    return f"{chance:.0%}"


def _value(value: float | None, aggregation: Aggregation | None) -> str:
    """Conversion rates as percentages, relative effects (aggregation None) as signed %."""
    if value is None:
        return "n/a"
    if aggregation is None:
        return f"{value:+.1%}"
    if aggregation is Aggregation.CONVERSION:
        return f"{value:.2%}"
    return f"{value:,.3f}"


def _interval(interval: Interval | None, aggregation: Aggregation | None) -> str:
    if interval is None:
        return "n/a"
    if aggregation is Aggregation.CONVERSION:
        return (
            f"{interval.estimate * 100:+.2f} pp\n"
            f"[{interval.ci_low * 100:+.2f}, {interval.ci_high * 100:+.2f}]"
        )
    if aggregation is None:
        low, high = _value(interval.ci_low, None), _value(interval.ci_high, None)
        return f"{_value(interval.estimate, None)}\n[{low}, {high}]"
    return f"{interval.estimate:+,.3f}\n[{interval.ci_low:+,.3f}, {interval.ci_high:+,.3f}]"


def _p(p_value: float | None) -> str:
    if p_value is None:
        return "n/a"
    return "<0.0001" if p_value < 1e-4 else f"{p_value:.4f}"
