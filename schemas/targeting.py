"""Targeting rules: who an experiment or flag is served to, as data every SDK can evaluate.

A rule is one of

- a condition on one attribute: ``{"attribute": "country", "op": "in", "values": ["de"]}``;
- ``{"all": [rule, ...]}`` (every rule holds), ``{"any": [rule, ...]}`` (at least one),
  ``{"not": rule}``.

Operators: ``eq``, ``ne``, ``in``, ``not_in`` (any JSON scalar); ``lt``, ``le``, ``gt``,
``ge`` (numbers); ``semver_eq``, ``semver_lt``, ``semver_le``, ``semver_gt``,
``semver_ge`` (semantic versions, ``1.4.0-beta.2``; a leading ``v`` is allowed);
``regex`` (Python ``re.search`` syntax, on string attributes); ``exists`` (``value``
true or false, default true). A condition on an attribute the unit lacks, or whose value
has the wrong type for the operator, is false (and ``not`` of it true).

Layers give experiments mutually exclusive slices of units: a unit's layer bucket (see
``liftstream.targeting``) must fall in ``[start, end)`` percent of the layer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from schemas.identifiers import Key
from schemas.limits import (
    MAX_NAME_CHARS,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    MAX_RULE_VALUES,
)

#: An operand (a ``regex`` pattern too): strings up to ``MAX_NAME_CHARS``, finite numbers.
Scalar = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] | int | float | bool

EQUALITY_OPS = ("eq", "ne")
MEMBERSHIP_OPS = ("in", "not_in")
NUMERIC_OPS = ("lt", "le", "gt", "ge")
SEMVER_OPS = ("semver_eq", "semver_lt", "semver_le", "semver_gt", "semver_ge")
Operator = Literal[
    "eq",
    "ne",
    "in",
    "not_in",
    "lt",
    "le",
    "gt",
    "ge",
    "semver_eq",
    "semver_lt",
    "semver_le",
    "semver_gt",
    "semver_ge",
    "regex",
    "exists",
]

#: ``MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]``, with an optional leading ``v``.
SEMVER_PATTERN = re.compile(
    r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


class AttributeCondition(BaseModel):
    """One test of one attribute of the unit."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    attribute: str = Field(min_length=1, max_length=128)
    op: Operator
    value: Scalar | None = None
    values: list[Scalar] | None = Field(default=None, max_length=MAX_RULE_VALUES)

    @model_validator(mode="after")
    def _check_operands(self) -> AttributeCondition:
        op = self.op
        if op in MEMBERSHIP_OPS:
            if self.values is None:
                raise ValueError(f"values: '{op}' needs a list of values")
            if self.value is not None:
                raise ValueError(f"value: '{op}' takes 'values', not 'value'")
            return self
        if self.values is not None:
            raise ValueError(f"values: '{op}' takes one 'value', not 'values'")
        if op == "exists":
            if self.value is not None and not isinstance(self.value, bool):
                raise ValueError("value: 'exists' takes true or false")
            return self
        if self.value is None:
            raise ValueError(f"value: '{op}' needs a value")
        if op in NUMERIC_OPS and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"value: '{op}' compares numbers, got {self.value!r}")
        if op in SEMVER_OPS and (
            not isinstance(self.value, str) or SEMVER_PATTERN.match(self.value) is None
        ):
            raise ValueError(f"value: {self.value!r} is not a semantic version like 1.4.0")
        if op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("value: 'regex' needs a pattern string")
            try:
                re.compile(self.value)
            except re.error as error:
                raise ValueError(f"value: not a valid regular expression ({error})") from None
        return self


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Rule] = Field(min_length=1, max_length=MAX_RULE_CONDITIONS)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    any: list[Rule] = Field(min_length=1, max_length=MAX_RULE_CONDITIONS)


class NotRule(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    not_: Rule = Field(alias="not")


def _rule_kind(value: Any) -> str:
    """The union tag (``rule:<kind>``; error paths drop it, see ``liftstream.errors``)."""
    if isinstance(value, dict):
        for kind in ("all", "any", "not"):
            if kind in value:
                return f"rule:{kind}"
        return "rule:attribute"
    if isinstance(value, AllOf):
        return "rule:all"
    if isinstance(value, AnyOf):
        return "rule:any"
    if isinstance(value, NotRule):
        return "rule:not"
    return "rule:attribute"


Rule = Annotated[
    Annotated[AttributeCondition, Tag("rule:attribute")]
    | Annotated[AllOf, Tag("rule:all")]
    | Annotated[AnyOf, Tag("rule:any")]
    | Annotated[NotRule, Tag("rule:not")],
    Discriminator(_rule_kind),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotRule.model_rebuild()


def check_rule_size(rule: Rule) -> Rule:
    """Refuse a rule nested deeper than ``MAX_RULE_DEPTH`` or holding more than
    ``MAX_RULE_CONDITIONS`` conditions (walked without recursion)."""
    conditions = 0
    pending: list[tuple[Rule, int]] = [(rule, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_RULE_DEPTH:
            raise ValueError(f"nested deeper than {MAX_RULE_DEPTH} levels of all/any/not")
        if isinstance(node, AllOf | AnyOf):
            pending.extend(
                (child, depth + 1) for child in (node.all if isinstance(node, AllOf) else node.any)
            )
        elif isinstance(node, NotRule):
            pending.append((node.not_, depth + 1))
        else:
            conditions += 1
    if conditions > MAX_RULE_CONDITIONS:
        raise ValueError(f"{conditions} conditions; the limit is {MAX_RULE_CONDITIONS}")
    return rule


#: A whole targeting rule, bounded in depth and in conditions (use this in definitions).
TargetingRule = Annotated[Rule, AfterValidator(check_rule_size)]


class LayerRange(BaseModel):
    """A slice ``[start, end)`` (percent) of a layer's units; slices in a layer must not overlap."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Key
    start: float = Field(ge=0, lt=100)
    end: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _check_order(self) -> LayerRange:
        if self.end <= self.start:
            raise ValueError(f"end: {self.end:g} must be above start {self.start:g}")
        return self

    def overlaps(self, other: LayerRange) -> bool:
        return self.name == other.name and self.start < other.end and other.start < self.end
