"""A PUT naming one experiment or flag in its path and another in its body is refused,
naming the field, and changes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.control_memory import MemoryBackend, call

FLAG = {"key": "dark-mode", "value_type": "string", "on_value": "dark", "off_value": "light"}
EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("flags", {"flag": FLAG}, "flag.key"),
        ("experiments", {"experiment": EXPERIMENT}, "experiment.key"),
    ],
)
def test_a_put_whose_body_names_another_resource_is_refused(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
    kind: str,
    body: dict[str, object],
    field: str,
) -> None:
    backend, client, headers = control_api
    events_before = len(backend.events)
    response = call(client, headers, "PUT", f"/v1/tenants/acme/{kind}/other", body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["errors"]
    assert problem["field"] == field
    assert "differs from 'other' in the path" in problem["reason"]
    assert len(backend.events) == events_before
