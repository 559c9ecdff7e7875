"""Experiment files in, control events out: what ``liftstream apply -f FILE`` does.

``load_experiment_file`` reads a YAML experiment and validates it against
``schemas.Experiment``; a bad file raises ``InvalidInputError`` listing every problem as
``field.path: reason``. ``apply_experiment`` sends it to the control service, which
checks it against the current state, writes the control event and answers once applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from liftstream.errors import InvalidInputError
from liftstream_cli.control_api import ControlApi
from liftstream_cli.local_settings import Settings
from liftstream_cli.yaml_files import load_model_file
from schemas.experiment import Experiment
from schemas.identifiers import TenantId


def load_experiment_file(path: str | Path) -> Experiment:
    """The experiment defined in the YAML file at ``path``."""
    return load_model_file(path, Experiment, "experiment")


@dataclass(frozen=True)
class AppliedExperiment:
    """What the control service made of an applied file."""

    tenant_id: str
    key: str
    version: int
    status: str
    changed: bool
    event_id: str | None
    author: str


def apply_experiment(
    experiment: Experiment, tenant_id: str, settings: Settings, reason: str = ""
) -> AppliedExperiment:
    """Create the experiment, or define its new version, through the control service.

    Returns once the control plane has applied the change (or found nothing to change);
    a refusal raises ``InvalidInputError`` naming each field and reason.
    """
    try:
        _TenantCheck(tenant_id=tenant_id)
    except ValidationError as error:
        raise InvalidInputError.from_validation("invalid tenant", error) from None
    with ControlApi(settings.control_url, settings.api_key) as api:
        answer = api.put_experiment(tenant_id, experiment, reason)
        author = api.whoami().key_id
    state = answer.experiment.experiment
    return AppliedExperiment(
        tenant_id=tenant_id,
        key=experiment.key,
        version=state.version,
        status=state.status,
        changed=answer.changed,
        event_id=None if answer.event_id is None else str(answer.event_id),
        author=author,
    )


class _TenantCheck(BaseModel):
    tenant_id: TenantId
