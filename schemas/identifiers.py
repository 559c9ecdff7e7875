"""Constrained string types shared by every contract (keys, names, tenant ids)."""

from typing import Annotated

from pydantic import StringConstraints

from schemas.limits import MAX_TENANT_ID_CHARS, MAX_UNIT_ID_CHARS

#: A tenant, experiment, variant or metric key: lower-case, URL- and topic-key-safe.
Key = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", strip_whitespace=False)
]
TenantId = Annotated[
    str, StringConstraints(pattern=rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_TENANT_ID_CHARS - 1}}}$")
]
#: A unit (user, account, session) id as the customer's service knows it.
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_UNIT_ID_CHARS)]
#: The name of an outcome event, e.g. ``checkout_completed`` or ``page.view``.
EventName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
