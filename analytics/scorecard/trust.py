"""Whether a scorecard can be trusted, and whether its experiment may stop.

The sample-ratio check (units per variant against the design's weights) decides whether
the scorecard can be trusted at all; units in variants the experiment does not define
are a warning too. The stopping advice reads the sequential tests: a guardrail decided
for the worse, or every primary metric decided.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analytics.scorecard.documents import SampleRatioDoc
from analytics.scorecard.inputs import ScorecardInput
from analytics.stats import sample_ratio_mismatch
from schemas.experiment import Experiment


@dataclass(slots=True)
class StopSignals:
    """What the sequential tests say about stopping one experiment."""

    #: Guardrails whose always-valid test decided, and for the worse.
    harmful: list[str]
    #: Primary metrics (sorted, once each) whose always-valid test has not decided.
    undecided: list[str]
    has_primary: bool


def sample_ratios(
    inputs: Sequence[ScorecardInput], units: Sequence[Mapping[str, int]], threshold: float
) -> list[SampleRatioDoc]:
    """Each experiment's sample-ratio check; one chi-square call per number of variants."""
    by_size: dict[int, list[int]] = defaultdict(list)
    designs: dict[int, tuple[list[str], list[float]]] = {}
    for index, item in enumerate(inputs):
        by_size[len(item.experiment.variants)].append(index)
        if id(item.experiment) not in designs:
            variants = item.experiment.variants
            designs[id(item.experiment)] = ([v.key for v in variants], [v.weight for v in variants])
    checks: list[SampleRatioDoc | None] = [None] * len(inputs)
    for members in by_size.values():
        keys = [designs[id(inputs[i].experiment)][0] for i in members]
        observed = [
            [units[i].get(key, 0) for key in row] for i, row in zip(members, keys, strict=True)
        ]
        weights = [designs[id(inputs[i].experiment)][1] for i in members]
        result = sample_ratio_mismatch(
            np.array(observed, dtype=np.float64), np.array(weights), threshold=threshold
        )
        p_values = np.ma.getdata(result.p_value).tolist()
        untested = np.ma.getmaskarray(result.p_value).tolist()
        shares = result.expected_share.tolist()
        detected = result.detected.tolist()
        reasons = result.reason.tolist()
        for row, index in enumerate(members):
            checks[index] = {
                "observed_units": dict(zip(keys[row], observed[row], strict=True)),
                "expected_share": dict(zip(keys[row], shares[row], strict=True)),
                "p_value": None if untested[row] else p_values[row],
                "threshold": threshold,
                "srm_detected": detected[row],
                "reason": reasons[row],
            }
    return [check for check in checks if check is not None]


def stopping(signals: StopSignals, *, trustworthy: bool) -> tuple[bool, str]:
    """Whether the sequential tests allow stopping now, and why (or why not): a guardrail
    decided for the worse (its always-valid test decided and its chance to beat the
    control is below one half), or every primary metric decided."""
    if not trustworthy:
        return False, "the scorecard is not trustworthy (see warnings): fix that first"
    if signals.harmful:
        harmful = ", ".join(signals.harmful)
        return True, f"guardrail significantly worse (always-valid p): {harmful}"
    if not signals.has_primary:
        return False, "no primary metric to decide on"
    if signals.undecided:
        undecided = ", ".join(signals.undecided)
        return False, f"primary metrics not decided yet (always-valid p): {undecided}"
    return True, "every primary metric is decided (always-valid p below alpha)"


def warnings_of(
    experiment: Experiment, units: Mapping[str, int], sample_ratio: SampleRatioDoc
) -> list[str]:
    """What makes this scorecard untrustworthy; empty when it can be trusted."""
    warnings = []
    if sample_ratio["srm_detected"]:
        shares = ", ".join(
            f"{key} {count} (expected {sample_ratio['expected_share'][key]:.1%})"
            for key, count in sample_ratio["observed_units"].items()
        )
        warnings.append(
            f"sample ratio mismatch (p = {sample_ratio['p_value']:.2g} < "
            f"{sample_ratio['threshold']:g}): units {shares}; assignment or exposure "
            "logging is broken, so effects are not trustworthy"
        )
    if units.keys() <= sample_ratio["observed_units"].keys():  # only defined variants
        return warnings
    defined = {variant.key for variant in experiment.variants}
    for variant, count in sorted(units.items()):
        if variant not in defined and count > 0:
            warnings.append(
                f"{count} units were exposed to variant '{variant}', which the experiment "
                "does not define"
            )
    return warnings
