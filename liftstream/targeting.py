"""Who gets what, evaluated locally: targeting rules, overrides, layers and the holdout.

Rules (``schemas.targeting``) are compiled once into plain closures over the unit's
attributes, so evaluating one costs a few dictionary lookups. For one experiment,
``ExperimentTargeting.variant`` decides in this order:

1. a forced override for the unit id (QA allowlist) wins over everything below;
2. a unit in the tenant-wide holdout (when one is given) is out: its bucket is
   ``bucket("holdout", tenant_id, unit_id, "holdout")`` and it is held out when that is
   below ``percent / 100``;
3. a unit outside the experiment's layer slice is out: its layer bucket is
   ``bucket("layer", layer_name, unit_id, "layer")`` (``liftstream.assignment.bucket``),
   and it must lie in ``[start / 100, end / 100)``, so experiments with disjoint slices
   of one layer never share a unit;
4. a unit failing the targeting rule is out;
5. otherwise the documented hash assignment (traffic ramp, then weights) decides.

``ConfigEvaluator`` (``liftstream.local_config``) adds the kill switch and the status
(only running experiments assign) in front of all of this.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from liftstream.assignment import PrefixedBucket, compile_experiment
from schemas.experiment import Experiment
from schemas.targeting import (
    SEMVER_PATTERN,
    AllOf,
    AttributeCondition,
    LayerRange,
    NotRule,
    Rule,
)

Attributes = Mapping[str, Any]
Predicate = Callable[[Attributes], bool]

LAYER_SALT = "layer"
HOLDOUT_SALT = "holdout"

_NUMBER_TYPES = (int, float)


def _always(_attributes: Attributes) -> bool:
    return True


@functools.lru_cache(maxsize=4096)
def semver_key(text: str) -> tuple[Any, ...] | None:
    """A sort key with semantic-version precedence (2.0.0), or None if ``text`` is not one."""
    match = SEMVER_PATTERN.match(text)
    if match is None:
        return None
    major, minor, patch, prerelease = match.groups()
    release = (int(major), int(minor or 0), int(patch or 0))
    if prerelease is None:
        return (*release, 1, ())
    parts = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in prerelease.split(".")
    )
    return (*release, 0, parts)


def _same(left: Any, right: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``true != 1``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, _NUMBER_TYPES) and isinstance(right, _NUMBER_TYPES):
        return bool(left == right)
    return type(left) is type(right) and left == right


def _membership(name: str, values: list[Any]) -> Predicate:
    if all(type(value) is str for value in values):
        strings = frozenset(values)

        def among_strings(attributes: Attributes) -> bool:
            value = attributes.get(name)
            return type(value) is str and value in strings

        return among_strings

    def among(attributes: Attributes) -> bool:
        if name not in attributes:
            return False
        value = attributes[name]
        return any(_same(value, candidate) for candidate in values)

    return among


def _condition(rule: AttributeCondition) -> Predicate:
    name, op, expected = rule.attribute, rule.op, rule.value
    if op == "exists":
        wanted = expected is not False

        def exists(attributes: Attributes) -> bool:
            return (attributes.get(name) is not None) is wanted

        return exists
    if op in ("in", "not_in"):
        among = _membership(name, list(rule.values or []))
        if op == "in":
            return among

        def not_among(attributes: Attributes) -> bool:
            return name in attributes and not among(attributes)

        return not_among
    if op in ("eq", "ne"):
        if type(expected) is str:

            def equals(attributes: Attributes) -> bool:
                return attributes.get(name) == expected

        else:

            def equals(attributes: Attributes) -> bool:
                return name in attributes and _same(attributes[name], expected)

        if op == "eq":
            return equals

        def differs(attributes: Attributes) -> bool:
            return name in attributes and not equals(attributes)

        return differs
    if op in ("lt", "le", "gt", "ge"):
        compare = _NUMERIC[op]

        def numeric(attributes: Attributes) -> bool:
            value = attributes.get(name)
            return type(value) in _NUMBER_TYPES and compare(value, expected)

        return numeric
    if op.startswith("semver_"):
        bound = semver_key(str(expected))
        compare = _NUMERIC[op.removeprefix("semver_")]

        def semver(attributes: Attributes) -> bool:
            value = attributes.get(name)
            if type(value) is not str:
                return False
            key = semver_key(value)
            return key is not None and compare(key, bound)

        return semver
    pattern = re.compile(str(expected))

    def matches(attributes: Attributes) -> bool:
        value = attributes.get(name)
        return type(value) is str and pattern.search(value) is not None

    return matches


_NUMERIC: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
}


def compile_rule(rule: Rule | None) -> Predicate:
    """The rule as a function of the unit's attributes (always true for no rule)."""
    if rule is None:
        return _always
    if isinstance(rule, AttributeCondition):
        return _condition(rule)
    if isinstance(rule, NotRule):
        inner = compile_rule(rule.not_)
        return lambda attributes: not inner(attributes)
    if isinstance(rule, AllOf):
        parts = tuple(compile_rule(part) for part in rule.all)
        if len(parts) == 1:
            return parts[0]

        def every(attributes: Attributes) -> bool:
            # A plain loop: all() over a generator costs a third more on this hot path.
            for part in parts:  # noqa: SIM110
                if not part(attributes):
                    return False
            return True

        return every
    options = tuple(compile_rule(part) for part in rule.any)
    if len(options) == 1:
        return options[0]

    def some(attributes: Attributes) -> bool:
        for option in options:  # noqa: SIM110 - see every()
            if option(attributes):
                return True
        return False

    return some


class LayerSlice:
    """Membership of a layer slice ``[start, end)`` percent, by the unit's layer bucket."""

    __slots__ = ("_bucket", "_end", "_start")

    def __init__(self, layer: LayerRange) -> None:
        self._bucket = PrefixedBucket(LAYER_SALT, layer.name, LAYER_SALT)
        self._start = layer.start / 100
        self._end = layer.end / 100

    def __call__(self, unit_id: str) -> bool:
        return self._start <= self._bucket(unit_id) < self._end


class Holdout:
    """The tenant-wide holdout: True for units kept out of every experiment."""

    __slots__ = ("_bucket", "_share")

    def __init__(self, tenant_id: str, percent: float) -> None:
        self._bucket = PrefixedBucket(HOLDOUT_SALT, tenant_id, HOLDOUT_SALT)
        self._share = percent / 100

    def __call__(self, unit_id: str) -> bool:
        return self._share > 0 and self._bucket(unit_id) < self._share


class ExperimentTargeting:
    """One experiment's overrides, layer slice, rule and assignment, compiled once."""

    __slots__ = ("_assign", "_held_out", "_in_layer", "_overrides", "_rule", "experiment")

    def __init__(self, experiment: Experiment, holdout: Holdout | None = None) -> None:
        self.experiment = experiment
        self._held_out = holdout
        self._overrides = dict(experiment.overrides)
        self._in_layer = None if experiment.layer is None else LayerSlice(experiment.layer)
        self._rule = None if experiment.targeting is None else compile_rule(experiment.targeting)
        self._assign = compile_experiment(experiment).assign

    def variant(self, unit_id: str, attributes: Attributes | None = None) -> str | None:
        """The unit's variant, or None when it is not in the experiment."""
        if self._overrides:
            forced = self._overrides.get(unit_id)
            if forced is not None:
                return forced
        if self._held_out is not None and self._held_out(unit_id):
            return None
        if self._in_layer is not None and not self._in_layer(unit_id):
            return None
        if self._rule is not None and not self._rule(attributes or {}):
            return None
        return self._assign(unit_id)


# Compiled forms keyed by id(experiment), as in ``liftstream.assignment``.
_compiled: dict[int, tuple[weakref.ref[Experiment], ExperimentTargeting]] = {}


def compile_targeting(experiment: Experiment) -> ExperimentTargeting:
    """The experiment's compiled targeting, cached for as long as the experiment lives."""
    entry = _compiled.get(id(experiment))
    if entry is not None and entry[0]() is experiment:
        return entry[1]
    compiled = ExperimentTargeting(experiment)
    experiment_id = id(experiment)
    _compiled[experiment_id] = (
        # The cache is bound now: at interpreter exit the module's globals may be gone.
        weakref.ref(experiment, lambda _ref, cache=_compiled: cache.pop(experiment_id, None)),
        compiled,
    )
    return compiled


def evaluate_experiment(
    experiment: Experiment, unit_id: str, attributes: Attributes | None = None
) -> str | None:
    """Overrides, layer, targeting, then the hash: the unit's variant or None."""
    return compile_targeting(experiment).variant(unit_id, attributes)
