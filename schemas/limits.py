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
from collections.abc import Iterable
from functools import partial
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
#: Most events one Kafka message of an event topic may carry (a batch, ``schemas.events``).
MAX_BATCH_EVENTS: Final = 10_000
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
#: Highest version number of an experiment, flag or metric (each version is kept for
#: roll-backs by every follower).
MAX_VERSION: Final = 10_000
#: Most experiments, flags and metrics one tenant may define (each its own count).
MAX_DEFINITIONS_PER_TENANT: Final = 1000
#: Most rollouts one tenant may have running or paused at once: each writes a decision to
#: the shared control topic at every check (at most one a second).
MAX_ACTIVE_ROLLOUTS_PER_TENANT: Final = 20
#: Most API keys (not revoked) one tenant may hold.
MAX_ACTIVE_KEYS_PER_TENANT: Final = 100
#: Changes one tenant may make through the control API: per second, sustained, and in a
#: burst (every change is written to the shared control topic and applied by every follower).
CONTROL_WRITES_PER_S: Final = 2.0
CONTROL_WRITE_BURST: Final = 30
#: Largest control event, as JSON (the broker takes 1 MiB; a definition is one event).
MAX_CONTROL_EVENT_BYTES: Final = 512 * 1024
#: Changes kept in memory per tenant for ``history`` (experiments and flags; metrics apart).
MAX_HISTORY_PER_TENANT: Final = 10_000
#: Quarantined control events kept per tenant (the newest), and the length of each reason.
MAX_QUARANTINED_PER_TENANT: Final = 100
MAX_QUARANTINE_REASON_CHARS: Final = 1000

# Files the CLI reads (``-f``).
#: Largest YAML file ``-f`` reads (a definition is sent as one request body).
MAX_YAML_BYTES: Final = MAX_BODY_BYTES
#: Deepest nesting of a YAML document ``-f`` reads.
MAX_YAML_DEPTH: Final = 64

#: Free text (descriptions, hypotheses, reasons, labels).
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
#: A short name (owner, seed, display name, author).
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]

#: The longest tenant id and unit id.
MAX_TENANT_ID_CHARS: Final = 64
MAX_UNIT_ID_CHARS: Final = 256
#: An event's ``properties`` / ``attributes``: keys at the top level, the longest key (at
#: any depth), the longest string value (at any depth). Depth and size: the free-form limits.
MAX_EVENT_PROPERTIES: Final = 100
MAX_PROPERTY_KEY_CHARS: Final = 128
MAX_PROPERTY_STRING_CHARS: Final = 1024

#: The broker's limit on one record batch: Kafka's default ``message.max.bytes``, which
#: every platform topic keeps (except the stream's snapshots, which allow more).
BROKER_MESSAGE_BYTES: Final = 1_048_588
#: The largest dead letter as JSON: a quarter of the broker's limit, so that a record batch
#: of several still fits. The caps below keep every letter under it (6 bytes a character
#: at worst, as JSON); ``DeadLetter.encode`` checks it.
MAX_DEAD_LETTER_BYTES: Final = 256 * 1024
#: The excerpt of the refused payload kept in a dead letter (characters).
DEAD_LETTER_PAYLOAD_CHARS: Final = 16 * 1024
#: A dead letter's one-line reason (characters).
DEAD_LETTER_REASON_CHARS: Final = 2048
#: A field error's dotted path and its reason (characters), in dead letters and answers.
FIELD_PATH_CHARS: Final = 256
FIELD_REASON_CHARS: Final = 512
#: Field errors kept per refused message; the rest are counted in one last error.
MAX_FIELD_ERRORS: Final = 20
#: The longest Kafka key written for a client's value (``tenant:unit`` of a valid event);
#: a longer one is replaced by ``tenant:sha256-<hex of the rest>``.
MAX_RECORD_KEY_BYTES: Final = MAX_TENANT_ID_CHARS + 1 + MAX_UNIT_ID_CHARS
#: How old an imported event may be (``liftstream import``; live ingest takes 30 days):
#: ten years, so that no timestamp from a broken export spans centuries of daily views.
MAX_IMPORT_AGE_DAYS: Final = 3653
#: How much of a client's value an error message quotes (characters).
QUOTE_CHARS: Final = 64


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion; ``ValueError`` for a NaN or
    an infinity met on the way (JSON has neither)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
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


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters; else its start and a note saying
    what was cut and the original length (``limit`` characters in all, so clipping twice
    changes nothing)."""
    if len(text) <= limit:
        return text
    note = f"... [truncated: {len(text)} characters, the first {{kept}} kept]"
    kept = max(0, limit - len(note.format(kept=limit)))
    return text[:kept] + note.format(kept=kept)


def clipped(limit: int) -> AfterValidator:
    """A pydantic validator that ``clip``s a string field to ``limit`` characters."""
    return AfterValidator(partial(clip, limit=limit))


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A client's value for an error message: ``repr`` of a short string, else its start
    and its length."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return f"a {type(value).__name__}"


def check_properties(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse an event's ``properties``/``attributes`` beyond the free-form limits or with
    too many keys, a key too long, or a string too long (at any depth); names the key."""
    if not value:
        return value  # most events have none: nothing to check
    check_free_form(value)
    if len(value) > MAX_EVENT_PROPERTIES:
        raise ValueError(f"{len(value)} keys; the limit is {MAX_EVENT_PROPERTIES}")
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if len(key) > MAX_PROPERTY_KEY_CHARS:
                    raise ValueError(
                        f"key {quote(key)} is {len(key)} characters; "
                        f"the limit is {MAX_PROPERTY_KEY_CHARS}"
                    )
                pending.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
        elif isinstance(item, str) and len(item) > MAX_PROPERTY_STRING_CHARS:
            raise ValueError(
                f"{quote(path)} is a string of {len(item)} characters; "
                f"the limit is {MAX_PROPERTY_STRING_CHARS}"
            )
    return value


#: A free-form JSON value bounded in depth and size (use as ``BoundedJson`` or wrap a type:
#: ``Annotated[dict[str, Any], AfterValidator(check_free_form)]``).
BoundedJson = Annotated[Any, AfterValidator(check_free_form)]


# Reads of the results service: bounded in size and in time, so no tenant's query can
# slow another tenant's answers for long.

#: The most days one ``/daily`` answer holds; a longer span shows the last ones (or those
#: from ``since``), earlier events folded into the first day's cumulative figures.
MAX_DAILY_DAYS: Final = 366
#: How long one read query of the results service may run; then it is interrupted and
#: that request alone is answered 503 with Retry-After.
QUERY_BUDGET_S: Final = 5.0
#: The Retry-After (seconds) of a query that ran out of its budget.
QUERY_RETRY_AFTER_S: Final = 5
#: Heavy reads (``/daily``, ``/health``) one tenant may have running at once on the results
#: service; one more is answered 429 with Retry-After.
MAX_HEAVY_READS_PER_TENANT: Final = 1
#: The largest magnitude of an outcome's ``value``: sums of squares over any number of
#: units then stay finite (an infinite or NaN sum once could not be published at all).
MAX_OUTCOME_VALUE: Final = 1e15
