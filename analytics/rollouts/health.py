"""The health gates of a rollout check: is the comparison itself trustworthy?

- ``srm``: the arms' units against the experiment's weights (chi-square, the engine's
  ``sample_ratio_mismatch``); it fails at p below the plan's ``srm_p`` (0.001).
- ``multiple_exposure``: the share of units seen in both arms (excluded from the
  comparison) above the plan's limit: assignment is broken somewhere.
- ``no_data``: an arm without units once the grace period since the start has passed.
- ``dead_letters``: the tenant's refused events since the rollout started, per unit in
  the rollout, above the limit: the candidate may be emitting broken events.
"""

from __future__ import annotations

from analytics.stats.srm import sample_ratio_mismatch
from schemas.rollout import CheckInputs, HealthGates, HealthResult


def check_health(
    gates: HealthGates, inputs: CheckInputs, seconds_since_start: float
) -> list[HealthResult]:
    units_c, units_t = inputs.control.units, inputs.treatment.units
    total = units_c + units_t
    results: list[HealthResult] = []
    if total > 0:
        srm = sample_ratio_mismatch(
            [units_c, units_t],
            [inputs.control_weight, inputs.treatment_weight],
            threshold=gates.srm_p,
        )
        p_value = float(srm.p_value.filled(1.0)[()])
        ok = not p_value < gates.srm_p
        detail = f"{units_c} control vs {units_t} candidate units: chi-square p = {p_value:.3g}"
    else:
        p_value, ok, detail = 1.0, True, "no units yet"
    results.append(HealthResult(gate="srm", ok=ok, value=p_value, limit=gates.srm_p, detail=detail))
    excluded = inputs.control.excluded_units + inputs.treatment.excluded_units
    rate = excluded / (total + excluded) if total + excluded else 0.0
    results.append(
        HealthResult(
            gate="multiple_exposure",
            ok=rate <= gates.max_multiple_exposure_rate,
            value=rate,
            limit=gates.max_multiple_exposure_rate,
            detail=f"{excluded} units seen in more than one arm",
        )
    )
    missing = [name for name, units in (("control", units_c), ("candidate", units_t)) if not units]
    late = seconds_since_start >= gates.no_data_grace_s
    results.append(
        HealthResult(
            gate="no_data",
            ok=not (missing and late),
            value=seconds_since_start,
            limit=gates.no_data_grace_s,
            detail=(
                f"no units in {' and '.join(missing)} after {seconds_since_start:.0f} s"
                if missing
                else "both arms have units"
            ),
        )
    )
    dead_rate = inputs.dead_letters / max(1, total)
    results.append(
        HealthResult(
            gate="dead_letters",
            ok=dead_rate <= gates.max_dead_letter_rate,
            value=dead_rate,
            limit=gates.max_dead_letter_rate,
            detail=f"{inputs.dead_letters} refused events of the tenant since the start",
        )
    )
    return results
