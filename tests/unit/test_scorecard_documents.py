"""The scorecard's TypedDict documents have exactly the fields of the schema's models, nested
documents where the models nest models, the same Literal choices; and a built document
validates into its model unchanged (so mypy's check of the builders is a check against
schemas/results.py)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from pydantic import BaseModel

from analytics.scorecard import build_scorecard, scorecard_documents
from analytics.scorecard.documents import DOCUMENT_MODELS
from analytics.scorecard.inputs import ScorecardInput
from schemas import results
from schemas.experiment import Aggregation, Experiment

DOCUMENTS = {model: document for model, document in DOCUMENT_MODELS.items()}
#: Model class -> its document class.
NESTED = {getattr(results, model): document for model, document in DOCUMENT_MODELS.items()}


def _parts(annotation: Any) -> set[Any]:
    """The members of a union (``X | None`` -> {X, NoneType}); else the annotation alone."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return {part for member in get_args(annotation) for part in _parts(member)}
    return {annotation}


def _literal_choices(annotation: Any) -> set[Any] | None:
    literals = [part for part in _parts(annotation) if get_origin(part) is Literal]
    return {choice for literal in literals for choice in get_args(literal)} if literals else None


@pytest.mark.parametrize("model_name", sorted(DOCUMENT_MODELS))
def test_each_document_has_the_fields_of_its_model(model_name: str) -> None:
    model: type[BaseModel] = getattr(results, model_name)
    document = DOCUMENTS[model_name]
    hints = get_type_hints(document)
    assert set(hints) == set(model.model_fields)
    for name, field in model.model_fields.items():
        model_parts, document_parts = _parts(field.annotation), _parts(hints[name])
        # Optional in the model <=> optional in the document.
        assert (type(None) in model_parts) == (type(None) in document_parts), name
        # A nested model is its document; lists of models are lists of documents.
        for part in model_parts:
            inner = get_args(part)[0] if get_origin(part) is list else part
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                expected = NESTED[inner] if get_origin(part) is not list else list[NESTED[inner]]
                assert expected in document_parts, name
        # The same Literal choices (role, direction, test, verdict, reason codes, ...).
        if _literal_choices(field.annotation) is not None:
            assert _literal_choices(hints[name]) == _literal_choices(field.annotation), name


def test_every_model_a_scorecard_nests_has_a_document() -> None:
    def nested(model: type[BaseModel]) -> set[type[BaseModel]]:
        found = set()
        for field in model.model_fields.values():
            for part in _parts(field.annotation):
                inner = get_args(part)[0] if get_origin(part) is list else part
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found |= {inner, *nested(inner)}
        return found

    assert nested(results.Scorecard) <= set(NESTED)


def test_built_documents_validate_into_the_models_unchanged() -> None:
    experiment = Experiment.model_validate(
        {
            "key": "doc",
            "variants": [{"key": "control", "weight": 50}, {"key": "b", "weight": 50}],
            "metrics": [
                {"name": "converted", "event": "buy", "type": "conversion"},
                {"name": "spend", "event": "buy", "type": "sum", "role": "guardrail"},
            ],
        }
    )
    units = {"control": 1000, "b": 1010}
    stats = {
        ("control", "buy", Aggregation.CONVERSION): (100.0, 100.0),
        ("b", "buy", Aggregation.CONVERSION): (130.0, 130.0),
        ("control", "buy", Aggregation.SUM): (2000.0, 90000.0),
        ("b", "buy", Aggregation.SUM): (2300.0, 99000.0),
    }
    (document,) = scorecard_documents([ScorecardInput("acme", experiment, units, stats)])
    card = results.Scorecard.model_validate(document)
    assert card.model_dump(mode="json") == document
    assert build_scorecard("acme", experiment, units, stats) == card
