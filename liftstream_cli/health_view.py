"""An experiment's health as rich text: what the pipeline counted and what it refused.

``liftstream results EXPERIMENT --health`` prints the experiment's exposures (stored,
duplicates dropped, late), its units and units seen in several variants, the tenant's
outcomes, the tenant's refused messages by stage and field with one reason each, and
anything of the experiment the pipeline quarantined.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from schemas.results import ExperimentHealth


def render_health(health: ExperimentHealth) -> RenderableType:
    parts: list[RenderableType] = [
        Text.assemble(
            (health.experiment_key, "bold"), f"  tenant {health.tenant_id} · pipeline health"
        )
    ]
    counts = Table(box=box.SIMPLE, show_header=True)
    for name in ("", "stored", "duplicates dropped", "late"):
        counts.add_column(name, justify="left" if not name else "right")
    counts.add_row(
        "exposures (this experiment)",
        f"{health.exposures:,}",
        f"{health.duplicate_exposures:,}",
        f"{health.late_exposures:,}",
    )
    counts.add_row(
        "outcomes (tenant)",
        f"{health.tenant_outcomes:,}",
        f"{health.tenant_duplicate_outcomes:,}",
        f"{health.tenant_late_outcomes:,}",
    )
    parts.append(counts)
    parts.append(
        Text(
            f"units counted by the stream: {health.units:,} · left out for seeing several "
            f"variants: {health.units_in_several_variants:,}"
        )
    )
    if health.empty_raw_log:
        parts.append(
            Text(
                "the raw log holds no exposure of this experiment yet: /daily and replays "
                "have nothing to compute from",
                style="yellow",
            )
        )
    parts.append(Text(f"refused messages of the tenant: {health.tenant_rejected:,}"))
    if health.rejected_by_reason:
        refused = Table(box=box.SIMPLE)
        for name, justify in (("stage", "left"), ("field", "left"), ("count", "right")):
            refused.add_column(name, justify=justify)  # type: ignore[arg-type]
        refused.add_column("for example", overflow="fold")
        for group in health.rejected_by_reason:
            refused.add_row(group.stage, group.field or "-", f"{group.count:,}", group.example)
        parts.append(refused)
    parts.extend(
        Text(f"error ({error.stage}) {error.subject}: {error.reason}", style="bold red")
        for error in health.errors
    )
    parts.append(
        Text(
            "late: received on a later UTC day than its timestamp (it changed a day already "
            "shown by --daily)",
            style="dim",
        )
    )
    return Group(*parts)
