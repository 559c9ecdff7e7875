"""Write only what every reader can read: a control event is read back before it is written.

The control topic is shared by every tenant and read by every follower (the control,
collector and results services, the stream worker). Before the control service writes an
event, ``readable_payload`` serialises it and checks, with the readers' own code, that

- it is at most ``MAX_CONTROL_EVENT_BYTES`` (well under what the broker takes);
- it decodes to the same event (``services.control_domain.control_log.decode_control_event``, what
  every follower runs);
- the projection can apply it to the current state (``ControlState.check``);
- the stream worker can compile each metric it carries (``UnitMetric.of``).

If any of these fails, nothing is written and the client gets a 422 naming the field.
"""

from __future__ import annotations

from analytics.unit_metrics import UnitMetric
from schemas.control import (
    ControlEvent,
    ExperimentChanged,
    ExperimentDefined,
    ExperimentRolledBack,
    MetricDefined,
    control_event_json,
)
from schemas.errors import FieldError
from schemas.experiment import MetricDefinition
from schemas.limits import MAX_CONTROL_EVENT_BYTES
from services.control.lookups import Refused
from services.control_domain.control_log import UnreadableControlEvent, decode_control_event
from services.control_domain.control_state import ControlState

SUBJECT = "the change cannot be stored: a reader of the control topic could not use it"


def readable_payload(event: ControlEvent, state: ControlState) -> bytes:
    """The bytes to write for ``event``; ``Refused`` (422) if a reader could not use them."""
    payload = control_event_json(event)
    if len(payload) > MAX_CONTROL_EVENT_BYTES:
        reason = (
            f"the change is {len(payload)} bytes as a control event; the limit is "
            f"{MAX_CONTROL_EVENT_BYTES}"
        )
        raise Refused(422, SUBJECT, [FieldError(field="", reason=reason)])
    try:
        read = decode_control_event(payload)
    except UnreadableControlEvent as error:
        # The union's tag leads each path (``flag_defined.flag.on_value``): not a field.
        tag = f"{event.type}."
        problems = [
            problem.model_copy(update={"field": problem.field.removeprefix(tag)})
            for problem in error.problems
        ]
        raise Refused(422, SUBJECT, problems) from None
    if read != event:
        raise Refused(
            422, SUBJECT, [FieldError(field="", reason="the event does not read back as written")]
        )
    try:
        state.check(read)
    except Exception as error:  # whatever the projection would raise, it must not be written
        raise Refused(422, SUBJECT, [_problem(error)]) from None
    for field, metric in _metrics(read):
        try:
            UnitMetric.of(metric)
        except Exception as error:
            raise Refused(422, SUBJECT, [_problem(error, field)]) from None
    return payload


def _problem(error: Exception, field: str = "") -> FieldError:
    return FieldError(field=field, reason=f"{type(error).__name__}: {error}"[:1000])


def _metrics(event: ControlEvent) -> list[tuple[str, MetricDefinition]]:
    """(field, metric) for each metric the event carries."""
    if isinstance(event, MetricDefined):
        return [("metric", event.metric)]
    if isinstance(event, ExperimentDefined | ExperimentChanged | ExperimentRolledBack):
        return [(f"experiment.metrics.{i}", m) for i, m in enumerate(event.experiment.metrics)]
    return []
