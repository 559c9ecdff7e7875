"""Experiment files in, control events out: what ``liftstream apply -f FILE`` does.

``load_experiment_file`` reads a YAML experiment and validates it against
``schemas.Experiment``; a bad file raises ``InvalidInputError`` listing every problem as
``field.path: reason``. ``apply_experiment`` writes the ``ExperimentDefined`` event to the
control topic and returns once Kafka has stored it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kafka.errors import KafkaError
from pydantic import ValidationError

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.producer import create_producer
from liftstream.settings import Settings
from schemas.control import ExperimentDefined
from schemas.deadletter import FieldError
from schemas.experiment import Experiment

APPLY_TIMEOUT_S = 30.0


def load_experiment_file(path: str | Path) -> Experiment:
    """The experiment defined in the YAML file at ``path``."""
    path = Path(path)
    subject = f"{path} is not a valid experiment"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInputError(
            f"cannot read {path}", [FieldError(field="", reason=error.strerror or str(error))]
        ) from None
    except yaml.YAMLError as error:
        raise InvalidInputError(
            subject, [FieldError(field="", reason=_yaml_reason(error))]
        ) from None
    if not isinstance(document, dict):
        found = "an empty file" if document is None else f"a {type(document).__name__}"
        raise InvalidInputError(
            subject,
            [
                FieldError(
                    field="", reason=f"expected a mapping of experiment fields, found {found}"
                )
            ],
        )
    try:
        return Experiment.model_validate(document)
    except ValidationError as error:
        raise InvalidInputError.from_validation(subject, error) from None


def apply_experiment(
    experiment: Experiment,
    tenant_id: str,
    author: str,
    settings: Settings,
    reason: str = "",
) -> ExperimentDefined:
    """Write the experiment's new definition to the control topic; wait until it is stored."""
    try:
        event = ExperimentDefined(
            tenant_id=tenant_id, author=author, reason=reason, experiment=experiment
        )
    except ValidationError as error:
        raise InvalidInputError.from_validation("invalid control event", error) from None
    producer = create_producer(
        settings.bootstrap,
        client_id="liftstream-apply",
        linger_ms=0,
        bootstrap_timeout_s=10.0,
        max_block_s=15.0,
    )
    try:
        producer.send(
            settings.topics.control, key=event.partition_key, value=event.model_dump_json().encode()
        ).get(timeout=APPLY_TIMEOUT_S)
    except KafkaError as error:
        raise PlatformUnavailableError(
            f"Kafka at {settings.bootstrap} did not store the control event on topic "
            f"{settings.topics.control} ({error}); the topic must exist: `liftstream up` "
            "creates the platform's topics"
        ) from error
    finally:
        producer.close(timeout=5)
    return event


def _yaml_reason(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"not valid YAML: {problem}"
    return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
