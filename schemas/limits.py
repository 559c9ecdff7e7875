"""Every limit on what a tenant may send, stated once: the contracts import these.

A limit exists so that one tenant's input can never cost another tenant anything: not a
5xx, not a wedged producer, not a crash-looping consumer, not a slow query. The README's
"Limits" table lists them; a breach is answered 413 (sizes of whole bodies) or 422 (a
field), naming the field.

Free-form JSON values (event ``properties`` and ``attributes``, flag values) are bounded in
nesting depth and in size: ``BoundedJson`` checks a value already parsed, iteratively, so a
deep value costs no recursion.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final

import orjson
from pydantic import AfterValidator, StringConstraints

#: Deepest nesting of a free-form JSON value (a scalar is depth 0, ``[1]`` depth 1).
MAX_JSON_DEPTH: Final = 16
#: Largest free-form JSON value, as compact JSON.
MAX_FREE_FORM_BYTES: Final = 16 * 1024
#: Longest free text (descriptions, hypotheses, reasons, labels, authors).
MAX_TEXT_CHARS: Final = 4096
#: Longest short name (owner, seed, display name).
MAX_NAME_CHARS: Final = 256
#: The longest attribution window and CUPED lookback: one year.
MAX_WINDOW_HOURS: Final = 24 * 366
MAX_LOOKBACK_DAYS: Final = 366
#: The largest request body any HTTP service reads, before parsing and before the key check.
MAX_BODY_BYTES: Final = 1024 * 1024

# Counts and ranges of the control plane's definitions (experiments, flags, metrics, keys).
#: Most variants of one experiment.
MAX_VARIANTS: Final = 32
#: Most metrics of one experiment.
MAX_METRICS: Final = 64
#: Most forced units (the QA allowlist) of one experiment or flag.
MAX_OVERRIDES: Final = 1000
#: Deepest nesting of ``all``/``any``/``not`` in a targeting rule (a condition is depth 1).
MAX_RULE_DEPTH: Final = 8
#: Most conditions in one targeting rule, counted over the whole tree.
MAX_RULE_CONDITIONS: Final = 256
#: Most values of one ``in``/``not_in`` condition.
MAX_RULE_VALUES: Final = 1000
#: Highest version number of an experiment, flag or metric.
MAX_VERSION: Final = 1_000_000
#: Most experiments, flags and metrics one tenant may define (each its own count).
MAX_DEFINITIONS_PER_TENANT: Final = 1000
#: Most API keys (not revoked) one tenant may hold.
MAX_ACTIVE_KEYS_PER_TENANT: Final = 100

# Files the CLI reads (``-f``).
#: Largest YAML file ``-f`` reads (a definition is sent as one request body).
MAX_YAML_BYTES: Final = MAX_BODY_BYTES
#: Deepest nesting of a YAML document ``-f`` reads.
MAX_YAML_DEPTH: Final = 64

#: Free text (descriptions, hypotheses, reasons, labels).
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
#: A short name (owner, seed, display name, author).
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion; ``ValueError`` for a NaN or
    an infinity met on the way (JSON has neither)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{item!r} is not a JSON number (only finite numbers are)")
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest  # deep enough to refuse: no need to walk the rest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def check_free_form(value: Any) -> Any:
    """Refuse a free-form value nested deeper than ``MAX_JSON_DEPTH``, larger than
    ``MAX_FREE_FORM_BYTES`` or holding NaN or an infinity; the error names the limit."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as error:
        raise ValueError(f"not a JSON value: {error}") from None
    if size > MAX_FREE_FORM_BYTES:
        raise ValueError(f"{size} bytes as JSON; the limit is {MAX_FREE_FORM_BYTES}")
    return value


#: A free-form JSON value bounded in depth and size (use as ``BoundedJson`` or wrap a type:
#: ``Annotated[dict[str, Any], AfterValidator(check_free_form)]``).
BoundedJson = Annotated[Any, AfterValidator(check_free_form)]
