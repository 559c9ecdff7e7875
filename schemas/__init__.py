"""The contracts of liftstream: every event, experiment, control event and topic.

Services and the SDK import these models; none of them redefines a contract.
JSON Schema for other languages is generated from them into ``schemas/jsonschema``
(``python -m schemas.export``).
"""

from schemas.aggregates import AggregateRecord, MetricStats, StreamProgress, VariantUnits
from schemas.config import ConfigSnapshot
from schemas.control import ControlEvent, ExperimentDefined, parse_control_event
from schemas.deadletter import DeadLetter
from schemas.errors import FieldError
from schemas.events import Event, ExposureEvent, OutcomeEvent, parse_event
from schemas.experiment import Aggregation, Experiment, MetricDefinition, Variant
from schemas.flags import Flag
from schemas.results import (
    ArmSummary,
    ExperimentView,
    Interval,
    LoadProgress,
    MetricComparison,
    SampleRatioCheck,
    Scorecard,
)
from schemas.topics import TopicCatalog, TopicSpec

__all__ = [
    "AggregateRecord",
    "Aggregation",
    "ArmSummary",
    "ConfigSnapshot",
    "ControlEvent",
    "DeadLetter",
    "Event",
    "Experiment",
    "ExperimentDefined",
    "ExperimentView",
    "ExposureEvent",
    "FieldError",
    "Flag",
    "Interval",
    "LoadProgress",
    "MetricComparison",
    "MetricDefinition",
    "MetricStats",
    "OutcomeEvent",
    "SampleRatioCheck",
    "Scorecard",
    "StreamProgress",
    "TopicCatalog",
    "TopicSpec",
    "Variant",
    "VariantUnits",
    "parse_control_event",
    "parse_event",
]
