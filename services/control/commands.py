"""Commands -> control events: every change checked against the current projection.

Each function takes the ``ControlState`` (read under the follower's lock) and a request,
and returns the event to write, None when the request changes nothing (re-applying the
same file is a no-op), or raises ``Refused`` (``lookups``, as the 404s of what it looks
up) with an HTTP status and, per field, the reason. Pure: no I/O, so every refusal is
unit-tested without Kafka.

Metrics carry no version in their definition: creating one gives version 1 and each
changed definition the next version.

Experiment lifecycle: ``draft -> running`` (start), ``running -> paused`` (pause),
``paused -> running`` (start), any but concluded ``-> concluded`` (conclude). A concluded
experiment never changes again. Changing a draft's definition keeps its version; any
change to a running or paused experiment needs the next version number.
"""

from __future__ import annotations

from typing import Literal

from schemas.control import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ExperimentChanged,
    ExperimentDefined,
    ExperimentRolledBack,
    FlagDefined,
    HoldoutSet,
    KillSwitchSet,
    MetricDefined,
    Role,
)
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.limits import MAX_ACTIVE_KEYS_PER_TENANT
from services.control.lookups import (
    Author,
    check_key_free_of_flags,
    check_room,
    experiment_entry,
    flag_entry,
    key_record,
    refuse,
    tenant_of,
)
from services.control.lookups import Refused as Refused  # what a command raises
from services.control_domain.api_keys import NewKey, generate_key
from services.control_domain.control_state import ControlState, TenantState

Action = Literal["start", "pause", "conclude"]

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[Action, tuple[tuple[str, ...], str]] = {
    "start": (("draft", "paused"), "running"),
    "pause": (("running",), "paused"),
    "conclude": (("draft", "running", "paused"), "concluded"),
}
_EVENT_TYPE = {
    "start": "experiment_started",
    "pause": "experiment_paused",
    "conclude": "experiment_concluded",
}
CREATABLE_STATUSES = ("draft", "running")


def _check_layer(tenant: TenantState, experiment: Experiment) -> None:
    layer = experiment.layer
    if layer is None:
        return
    for other_key, other in sorted(tenant.experiments.items()):
        other_layer = other.experiment.layer
        if (
            other_key != experiment.key
            and other.experiment.status != "concluded"
            and other_layer is not None
            and layer.overlaps(other_layer)
        ):
            raise refuse(
                409,
                "overlapping layer slices",
                "layer",
                f"[{layer.start:g}, {layer.end:g}) overlaps experiment '{other_key}' at "
                f"[{other_layer.start:g}, {other_layer.end:g}) in layer '{layer.name}'",
            )


def define_experiment(
    state: ControlState,
    author: Author,
    experiment: Experiment,
    *,
    status_given: bool,
    create_only: bool,
    reason: str,
) -> ExperimentDefined | None:
    """Create the experiment, or give it a new definition; None if nothing changes."""
    subject = "cannot define the experiment"
    tenant = tenant_of(state, author.tenant_id)
    check_key_free_of_flags(tenant, experiment.key)
    entry = tenant.experiments.get(experiment.key)
    if entry is None:
        if experiment.status not in CREATABLE_STATUSES:
            raise refuse(
                422,
                subject,
                "status",
                f"a new experiment starts as draft or running, not {experiment.status}",
            )
        check_room("experiments", len(tenant.experiments))
        _check_layer(tenant, experiment)
        return _defined(author, experiment, reason)
    if create_only:
        raise refuse(
            409,
            "duplicate key",
            "key",
            f"experiment '{experiment.key}' already exists (version "
            f"{entry.experiment.version}); update it with PUT and a new version",
        )
    current = entry.experiment
    if current.status == "concluded":
        raise refuse(409, subject, "status", "a concluded experiment cannot change")
    if status_given and experiment.status != current.status:
        raise refuse(
            409,
            subject,
            "status",
            f"is {current.status}; change it with start, pause or conclude, not by redefining",
        )
    candidate = experiment.model_copy(update={"status": current.status})
    if candidate == current:
        return None
    if candidate.version == current.version and current.status != "draft":
        if candidate.variants != current.variants:
            raise refuse(
                409,
                subject,
                "variants",
                f"changing the weights or variants of a {current.status} experiment needs "
                f"a new version: give version {current.version + 1}",
            )
        raise refuse(
            409,
            subject,
            "version",
            f"the definition differs from version {current.version}; a change to a "
            f"{current.status} experiment needs version {current.version + 1}",
        )
    if candidate.version not in (current.version, current.version + 1):
        raise refuse(
            409,
            subject,
            "version",
            f"is {candidate.version}; the next version is {current.version + 1}",
        )
    _check_layer(tenant, candidate)
    return _defined(author, candidate, reason)


def _defined(author: Author, experiment: Experiment, reason: str) -> ExperimentDefined:
    return ExperimentDefined(
        tenant_id=author.tenant_id, author=author.key_id, reason=reason, experiment=experiment
    )


def change_status(
    state: ControlState, author: Author, key: str, action: Action, reason: str
) -> ExperimentChanged:
    """Start, pause or conclude; ``Refused`` (409) for a transition the lifecycle forbids."""
    entry = experiment_entry(state, author.tenant_id, key)
    current = entry.experiment
    allowed_from, target = TRANSITIONS[action]
    if current.status not in allowed_from:
        raise refuse(
            409,
            "illegal status transition",
            "status",
            f"cannot {action} an experiment that is {current.status} "
            f"(allowed from {', '.join(allowed_from)})",
        )
    if action == "start":
        _check_layer(tenant_of(state, author.tenant_id), current)
    return ExperimentChanged(
        type=_EVENT_TYPE[action],  # type: ignore[arg-type]
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        experiment=current.model_copy(update={"status": target}),
    )


def ramp_experiment(
    state: ControlState, author: Author, key: str, traffic: float, reason: str
) -> ExperimentChanged | None:
    """Serve the experiment to ``traffic`` percent of eligible units (0 < traffic <= 100)."""
    if not 0 < traffic <= 100:
        raise refuse(
            422,
            "invalid ramp",
            "traffic",
            f"{traffic:g} is {'above 100' if traffic > 100 else 'not above 0'}; a ramp is a "
            "percent in (0, 100] (pause the experiment to serve nobody)",
        )
    entry = experiment_entry(state, author.tenant_id, key)
    current = entry.experiment
    if current.status == "concluded":
        raise refuse(409, "cannot ramp", "status", "a concluded experiment cannot change")
    if current.traffic == traffic:
        return None
    return ExperimentChanged(
        type="experiment_ramped",
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        experiment=current.model_copy(update={"traffic": traffic}),
    )


def roll_back_experiment(
    state: ControlState, author: Author, key: str, to_version: int, reason: str
) -> ExperimentRolledBack:
    """Restore version ``to_version``'s configuration as the next version."""
    entry = experiment_entry(state, author.tenant_id, key)
    current = entry.experiment
    if current.status == "concluded":
        raise refuse(409, "cannot roll back", "status", "a concluded experiment cannot change")
    if to_version not in entry.versions or to_version == current.version:
        known = ", ".join(str(v) for v in sorted(entry.versions) if v != current.version)
        raise refuse(
            422,
            "cannot roll back",
            "to_version",
            f"no earlier version {to_version} of '{key}' (earlier versions: {known or 'none'})",
        )
    restored = entry.versions[to_version].model_copy(
        update={"version": max(entry.versions) + 1, "status": current.status}
    )
    _check_layer(tenant_of(state, author.tenant_id), restored)
    return ExperimentRolledBack(
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        to_version=to_version,
        experiment=restored,
    )


def set_kill_switch(
    state: ControlState, author: Author, key: str, killed: bool, reason: str
) -> KillSwitchSet | None:
    """Turn a flag or experiment off for everyone (or back on); None if already so."""
    tenant = tenant_of(state, author.tenant_id)
    target = tenant.experiments.get(key) or tenant.flags.get(key)
    if target is None:
        raise refuse(
            404,
            "unknown key",
            "key",
            f"no flag or experiment '{key}' for tenant '{author.tenant_id}'",
        )
    if target.killed == killed:
        return None
    return KillSwitchSet(
        tenant_id=author.tenant_id, author=author.key_id, reason=reason, key=key, killed=killed
    )


def define_flag(
    state: ControlState, author: Author, flag: Flag, *, create_only: bool, reason: str
) -> FlagDefined | None:
    tenant = tenant_of(state, author.tenant_id)
    if flag.key in tenant.experiments:
        raise refuse(
            409, "duplicate key", "key", f"an experiment named '{flag.key}' already exists"
        )
    entry = tenant.flags.get(flag.key)
    if entry is not None:
        current = entry.flag
        if create_only:
            raise refuse(
                409,
                "duplicate key",
                "key",
                f"flag '{flag.key}' already exists (version {current.version})",
            )
        if flag == current:
            return None
        if flag.version != current.version + 1:
            raise refuse(
                409,
                "cannot define the flag",
                "version",
                f"is {flag.version}; a change needs version {current.version + 1}",
            )
    else:
        check_room("flags", len(tenant.flags))
    return FlagDefined(tenant_id=author.tenant_id, author=author.key_id, reason=reason, flag=flag)


def ramp_flag(
    state: ControlState, author: Author, key: str, ramp: float, reason: str
) -> FlagDefined | None:
    if not 0 <= ramp <= 100:
        raise refuse(
            422,
            "invalid ramp",
            "ramp",
            f"{ramp:g} is {'above 100' if ramp > 100 else 'below 0'}; a ramp is a percent "
            "in [0, 100]",
        )
    tenant_of(state, author.tenant_id)
    entry = flag_entry(state, author.tenant_id, key)
    if entry.flag.ramp == ramp:
        return None
    if ramp + entry.flag.holdback > 100:
        raise refuse(
            422,
            "invalid ramp",
            "ramp",
            f"{ramp:g} and the flag's holdback of {entry.flag.holdback:g}% (a rollout's "
            "control) add up to more than 100%",
        )
    return FlagDefined(
        type="flag_ramped",
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        flag=entry.flag.model_copy(update={"ramp": ramp}),
    )


def set_holdout(
    state: ControlState, author: Author, percent: float, reason: str
) -> HoldoutSet | None:
    if not 0 <= percent <= 100:
        raise refuse(422, "invalid holdout", "percent", f"{percent:g} is not a percent in [0, 100]")
    if tenant_of(state, author.tenant_id).holdout_percent == percent:
        return None
    return HoldoutSet(
        tenant_id=author.tenant_id, author=author.key_id, reason=reason, percent=percent
    )


def issue_key(
    state: ControlState, author: Author, role: Role, label: str, reason: str
) -> tuple[ApiKeyIssued, NewKey]:
    tenant_of(state, author.tenant_id)
    active = [record for record in state.keys.of_tenant(author.tenant_id) if not record.revoked]
    check_room("keys", len(active), MAX_ACTIVE_KEYS_PER_TENANT)
    key = generate_key()
    event = ApiKeyIssued(
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        key_id=key.key_id,
        key_hash=key.key_hash,
        role=role,
        label=label,
    )
    return event, key


def revoke_key(
    state: ControlState, author: Author, key_id: str, reason: str
) -> ApiKeyRevoked | None:
    if key_record(state, author.tenant_id, key_id).revoked:
        return None
    return ApiKeyRevoked(
        tenant_id=author.tenant_id, author=author.key_id, reason=reason, key_id=key_id
    )


def define_metric(
    state: ControlState,
    author: Author,
    metric: MetricDefinition,
    *,
    create_only: bool,
    reason: str,
) -> MetricDefined | None:
    """Create the metric (version 1) or give it the next version; None if nothing changes."""
    tenant = tenant_of(state, author.tenant_id)
    entry = tenant.metrics.get(metric.name)
    if entry is None:
        check_room("metrics", len(tenant.metrics))
        version = 1
    elif create_only:
        raise refuse(
            409,
            "duplicate name",
            "name",
            f"metric '{metric.name}' already exists (version {entry.version}); update it with PUT",
        )
    elif metric == entry.metric:
        return None
    else:
        version = entry.version + 1
    return MetricDefined(
        tenant_id=author.tenant_id,
        author=author.key_id,
        reason=reason,
        version=version,
        metric=metric,
    )
