"""An OpenFeature provider backed by liftstream's local evaluation.

    from openfeature import api
    from liftstream import LiftstreamClient
    from liftstream.openfeature import LiftstreamProvider

    client = LiftstreamClient.from_config(control_url, api_key)
    api.set_provider(LiftstreamProvider(client))
    flags = api.get_client()
    flags.get_boolean_value("new-checkout", False, EvaluationContext("user-42", {"region": "eu"}))

A key names a flag (``schemas.flags``: boolean, string, number or JSON values) or an
experiment (its variant key, by string evaluation). Everything is evaluated locally against
the client's config snapshot, exactly as ``ConfigEvaluator`` does: the context's
``targeting_key`` is the unit, its scalar attributes the targeting attributes (datetimes
as ISO-8601 strings; lists and objects are not targeting attributes and are left out).

Reasons: ``DISABLED`` (flag killed; experiment not running or killed), ``TARGETING_MATCH``
(a forced unit; a targeting rule matched with the flag fully on), ``SPLIT`` (the ramp's,
a rollout's holdback's or the experiment's hash decided), ``STATIC`` (a flag fully on for
everyone), ``DEFAULT`` (the unit is outside the rule, or the ramp is 0, or outside the
experiment: the flag's off value or the caller's default), ``ERROR`` (no snapshot yet,
unknown key, no targeting key, wrong type). Variants: ``on``/``off`` for flags, the
variant key for experiments. Flag metadata: ``kind``, ``version``, ``revision`` (the
snapshot's), and a flag's ``value_type``, ``ramp`` and ``holdback``.

Exposures are logged as liftstream exposures (once per process per unit and variant, as
``expose`` does): an experiment's variant; a flag's ``on``/``off`` as a variant of the
flag's key (while a rollout drives the flag, of its exposure key from the snapshot, so
each rollout's arms hold only its own units), for the units of the flag's comparison
(``FlagEvaluator.exposure``: its ramp and, under a rollout, its holdback; never for a
killed flag or units outside its rule),
so a flag's ramp can be measured like an experiment and a rollout can guard it. ``track``
is liftstream's ``track`` (the context's unit; the details' value, default 1, and
attributes as properties). A new config snapshot emits ``PROVIDER_CONFIGURATION_CHANGED`` naming the
flags and experiments that changed (none changed, e.g. a reconnected stream: no event;
``PROVIDER_READY`` for the first one after an initialisation that found none).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagType, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError
from liftstream.local_config import ConfigEvaluator, ConfigPoller, FlagEvaluator
from schemas.errors import FieldError
from schemas.events import AttributeValue
from schemas.flags import OFF_VARIANT, ON_VARIANT

log: Final = logging.getLogger(__name__)

_SCALARS: Final = (str, int, float, bool)


def _attributes(context: EvaluationContext | None) -> dict[str, AttributeValue]:
    if context is None:
        return {}
    found: dict[str, AttributeValue] = {}
    for name, value in context.attributes.items():
        if isinstance(value, datetime):
            found[name] = value.isoformat()
        elif value is None or isinstance(value, _SCALARS):
            found[name] = value
    return found


def _error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


def _typed(value: Any, flag_type: FlagType) -> tuple[bool, Any]:
    """(fits, value as ``flag_type``): JSON numbers serve integers when integral."""
    if flag_type is FlagType.BOOLEAN:
        return isinstance(value, bool), value
    if flag_type is FlagType.STRING:
        return isinstance(value, str), value
    if flag_type is FlagType.OBJECT:
        return isinstance(value, dict | list), value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, value
    if flag_type is FlagType.FLOAT:
        return True, float(value)
    if isinstance(value, float):
        return value.is_integer(), int(value) if value.is_integer() else value
    return True, value


def _changed(old: ConfigEvaluator | None, new: ConfigEvaluator) -> list[str]:
    """Keys of the flags and experiments whose configuration differs (every experiment
    when the holdout changed)."""
    before = {} if old is None else _entries(old)
    after = _entries(new)
    holdout_moved = old is not None and (
        old.snapshot.holdout_percent != new.snapshot.holdout_percent
    )
    experiments = {e.experiment.key for e in new.snapshot.experiments} if holdout_moved else set()
    return sorted(
        key
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key) or key in experiments
    )


def _entries(evaluator: ConfigEvaluator) -> dict[str, Any]:
    snapshot = evaluator.snapshot
    entries: dict[str, Any] = {entry.experiment.key: entry for entry in snapshot.experiments}
    entries |= {entry.flag.key: entry for entry in snapshot.flags}
    return entries


class LiftstreamProvider(AbstractProvider):
    """OpenFeature flags and experiments from a ``LiftstreamClient`` with a config poller."""

    def __init__(self, client: LiftstreamClient, *, log_exposures: bool = True) -> None:
        super().__init__()
        if client.config is None:
            raise InvalidInputError(
                "invalid provider",
                [
                    FieldError(
                        field="client",
                        reason="the client has no config poller: make it with "
                        "LiftstreamClient.from_config or pass config=",
                    )
                ],
            )
        self.client = client
        self.poller: ConfigPoller = client.config
        self.log_exposures = log_exposures
        #: Exposures that could not be logged (bad attributes, closed client): counted,
        #: never turned into a failed evaluation.
        self.exposure_failures = 0
        self._listening = False

    def get_metadata(self) -> Metadata:
        return Metadata(name="liftstream")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Listen for new snapshots; ready once one is there (fetched now if need be)."""
        if not self._listening:
            self.poller.add_listener(self._on_config)
            self._listening = True
        if self.poller.evaluator is None:
            self.poller.refresh()
        if self.poller.evaluator is None:
            raise ProviderNotReadyError(
                f"no configuration snapshot yet: {self.poller.last_error or 'not fetched'}"
            )

    def shutdown(self) -> None:
        """Stop listening (the client stays the caller's to close)."""
        self.poller.remove_listener(self._on_config)
        self._listening = False

    def _on_config(self, old: ConfigEvaluator | None, new: ConfigEvaluator) -> None:
        changed = _changed(old, new)
        details = ProviderEventDetails(
            flags_changed=changed,
            message=f"configuration revision {new.snapshot.revision}",
            metadata={"revision": new.snapshot.revision},
        )
        if old is None:
            self.emit_provider_ready(details)
        elif changed:  # the same content again (a reconnected stream): nothing to say
            self.emit_provider_configuration_changed(details)

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """liftstream's ``track`` for the context's unit; ``InvalidInputError`` naming
        the field for what liftstream refuses (no targeting key, a bad name or value)."""
        unit = evaluation_context.targeting_key if evaluation_context else None
        if not unit:
            raise InvalidInputError(
                "invalid tracking event",
                [FieldError(field="targeting_key", reason="the context names no unit")],
            )
        value = 1.0 if tracking_event_details is None else tracking_event_details.value
        properties = {} if tracking_event_details is None else tracking_event_details.attributes
        self.client.track(unit, tracking_event_name, 1.0 if value is None else value, properties)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(FlagType.BOOLEAN, flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(FlagType.STRING, flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(FlagType.INTEGER, flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(FlagType.FLOAT, flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(FlagType.OBJECT, flag_key, default_value, evaluation_context)

    def _resolve(
        self, flag_type: FlagType, key: str, default: Any, context: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        evaluator = self.poller.evaluator
        if evaluator is None:
            return _error(
                default,
                ErrorCode.PROVIDER_NOT_READY,
                f"no configuration snapshot yet: {self.poller.last_error or 'not fetched'}",
            )
        unit = context.targeting_key if context else None
        if not unit:
            return _error(
                default, ErrorCode.TARGETING_KEY_MISSING, "the context has no targeting_key"
            )
        attributes = _attributes(context)
        flag = evaluator.flag_evaluator(key)
        if flag is not None:
            return self._flag(flag, flag_type, key, default, unit, attributes, evaluator)
        if evaluator.experiment(key) is not None:
            return self._experiment(evaluator, flag_type, key, default, unit, attributes)
        return _error(
            default,
            ErrorCode.FLAG_NOT_FOUND,
            f"no flag or experiment '{key}' in tenant '{evaluator.snapshot.tenant_id}''s "
            f"configuration (revision {evaluator.snapshot.revision})",
        )

    def _flag(
        self,
        flag: FlagEvaluator,
        flag_type: FlagType,
        key: str,
        default: Any,
        unit: str,
        attributes: dict[str, AttributeValue],
        evaluator: ConfigEvaluator,
    ) -> FlagResolutionDetails[Any]:
        definition = flag.config.flag
        on, state = flag.resolve(unit, attributes)
        raw = definition.on_value if on else definition.off_value
        fits, value = _typed(raw, flag_type)
        if not fits:
            return _error(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"flag '{key}' serves {definition.value_type} values, not {flag_type.lower()}",
            )
        if state == "killed":
            reason = Reason.DISABLED
        elif state == "override":
            reason = Reason.TARGETING_MATCH
        elif state == "holdback":
            reason = Reason.SPLIT
        elif state == "untargeted" or definition.ramp == 0:
            reason = Reason.DEFAULT
        elif definition.ramp < 100:
            reason = Reason.SPLIT
        else:
            reason = Reason.STATIC if definition.targeting is None else Reason.TARGETING_MATCH
        variant = ON_VARIANT if on else OFF_VARIANT
        logged = flag.exposure(on, state)
        if logged is not None:
            self._expose(flag.config.logged_key, logged, definition.version, unit, attributes)
        return FlagResolutionDetails(
            value=value,
            reason=reason,
            variant=variant,
            flag_metadata={
                "kind": "flag",
                "version": definition.version,
                "revision": evaluator.snapshot.revision,
                "value_type": definition.value_type,
                "ramp": definition.ramp,
                "holdback": definition.holdback,
                "exposure_key": flag.config.logged_key,
            },
        )

    def _experiment(
        self,
        evaluator: ConfigEvaluator,
        flag_type: FlagType,
        key: str,
        default: Any,
        unit: str,
        attributes: dict[str, AttributeValue],
    ) -> FlagResolutionDetails[Any]:
        experiment = evaluator.experiment(key)
        assert experiment is not None
        if flag_type is not FlagType.STRING:
            return _error(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"'{key}' is an experiment: its value is a variant key, a string",
            )
        metadata = {
            "kind": "experiment",
            "version": experiment.version,
            "revision": evaluator.snapshot.revision,
        }
        if not evaluator.is_running(key):
            return FlagResolutionDetails(
                value=default, reason=Reason.DISABLED, flag_metadata=metadata
            )
        variant = evaluator.variant(key, unit, attributes)
        if variant is None:
            return FlagResolutionDetails(
                value=default, reason=Reason.DEFAULT, flag_metadata=metadata
            )
        self._expose(key, variant, experiment.version, unit, attributes)
        return FlagResolutionDetails(
            value=variant,
            reason=Reason.TARGETING_MATCH if unit in experiment.overrides else Reason.SPLIT,
            variant=variant,
            flag_metadata=metadata,
        )

    def _expose(
        self,
        key: str,
        variant: str,
        version: int,
        unit: str,
        attributes: dict[str, AttributeValue],
    ) -> None:
        if not self.log_exposures:
            return
        try:
            self.client.log_exposure(key, variant, version, unit, attributes)
        except Exception:
            self.exposure_failures += 1
            log.warning("could not log the exposure of %s to '%s'", unit, key, exc_info=True)
