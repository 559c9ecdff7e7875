"""Constrained string types shared by every contract (keys, names, tenant ids)."""

import re
from typing import Annotated, Final

from pydantic import StringConstraints

from schemas.limits import MAX_TENANT_ID_CHARS, MAX_UNIT_ID_CHARS

KEY_PATTERN: Final = r"[a-z0-9][a-z0-9_.-]{0,99}"
EVENT_NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"

#: A tenant, experiment, variant or metric key: lower-case, URL- and topic-key-safe.
Key = Annotated[str, StringConstraints(pattern=rf"^{KEY_PATTERN}$", strip_whitespace=False)]
TenantId = Annotated[
    str, StringConstraints(pattern=rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_TENANT_ID_CHARS - 1}}}$")
]
#: A unit (user, account, session) id as the customer's service knows it.
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_UNIT_ID_CHARS)]
#: The name of an outcome event, e.g. ``checkout_completed`` or ``page.view``.
EventName = Annotated[str, StringConstraints(pattern=rf"^{EVENT_NAME_PATTERN}$")]


class RememberedPattern:
    """A full match of a pattern that remembers the values it accepted (up to ``limit``,
    then it starts again): the SDK's and the collector's hot paths check the same few
    keys and names over and over. ``accepted`` may be tested first, inline."""

    __slots__ = ("_limit", "_pattern", "accepted")

    def __init__(self, pattern: str, limit: int = 10_000) -> None:
        self._pattern = re.compile(pattern + r"\Z")
        self._limit = limit
        self.accepted: dict[str, bool] = {}

    def __call__(self, value: str) -> bool:
        accepted = self.accepted
        if value in accepted:
            return True
        if not self._pattern.match(value):
            return False
        if len(accepted) >= self._limit:
            accepted.clear()
        accepted[value] = True
        return True


#: ``Key`` and ``EventName`` checks for the paths that skip pydantic.
is_key: Final = RememberedPattern(KEY_PATTERN)
is_event_name: Final = RememberedPattern(EVENT_NAME_PATTERN)
