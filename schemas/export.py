"""Generate the JSON Schema files in ``schemas/jsonschema`` from the pydantic models.

``python -m schemas.export`` rewrites them; ``python -m schemas.export --check`` exits
non-zero when a checked-in file differs from what the models generate (a test runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, TypeAdapter

from schemas.aggregates import AggregateRecord
from schemas.config import ConfigSnapshot
from schemas.control import ControlEvent, ExperimentDefined
from schemas.deadletter import DeadLetter
from schemas.events import Event, EventBatch, ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment
from schemas.flags import Flag
from schemas.results import (
    DailyResults,
    ExperimentHealth,
    ExperimentView,
    LoadProgress,
    Scorecard,
)
from schemas.rollout import RolloutPlan
from schemas.shadow import ShadowGate, ShadowObservation, ShadowResults

OUTPUT_DIR = Path(__file__).parent / "jsonschema"

_MODELS: dict[str, type[BaseModel] | TypeAdapter[object]] = {
    "exposure_event": ExposureEvent,
    "outcome_event": OutcomeEvent,
    "event": TypeAdapter(Event),
    "event_batch": TypeAdapter(EventBatch),
    "experiment": Experiment,
    "experiment_defined": ExperimentDefined,
    "control_event": TypeAdapter(ControlEvent),
    "flag": Flag,
    "rollout_plan": RolloutPlan,
    "config_snapshot": ConfigSnapshot,
    "aggregate_record": TypeAdapter(AggregateRecord),
    "dead_letter": DeadLetter,
    "scorecard": Scorecard,
    "experiment_view": ExperimentView,
    "load_progress": LoadProgress,
    "daily_results": DailyResults,
    "experiment_health": ExperimentHealth,
    "shadow_observation": ShadowObservation,
    "shadow_results": ShadowResults,
    "shadow_gate": ShadowGate,
}


def generated() -> dict[str, str]:
    """File name -> JSON text, as the current models generate them."""
    files = {}
    for name, model in _MODELS.items():
        schema = (
            model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
        )
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        files[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def stale_files() -> list[str]:
    return [
        name
        for name, text in generated().items()
        if not (OUTPUT_DIR / name).exists() or (OUTPUT_DIR / name).read_text() != text
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_files()
        if stale:
            print(f"stale JSON Schema files (run python -m schemas.export): {stale}")
            return 1
        return 0
    OUTPUT_DIR.mkdir(exist_ok=True)
    for name, text in generated().items():
        (OUTPUT_DIR / name).write_text(text)
    print(f"wrote {len(_MODELS)} schemas to {OUTPUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
