"""What every CLI command shares: exit codes, the common options, and user errors.

- Exit codes: 0 done, ``EXIT_USER_ERROR`` (1) something the user can act on (printed as
  ``error: ...`` on stderr, no traceback), ``EXIT_NOT_ALLOWED`` (3) a gate said no (``shadow
  gate``), ``EXIT_INTERRUPTED`` (130) Ctrl-C.
- ``TenantOption`` (``--tenant``, default ``$LIFTSTREAM_TENANT``, else ``demo``;
  ``tenant_or_default`` resolves it), ``ReasonOption``, ``JsonOption``.
- ``user_errors()``: the errors a person can act on (invalid input, no platform, a refused
  key, a service's refusal, a timeout) become that message and exit code 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
from liftstream_cli.console import fail
from liftstream_cli.control_api import AccessDeniedError, ControlServiceError
from liftstream_cli.local_settings import default_tenant
from liftstream_cli.results_api import ResultsServiceError, UnknownExperimentError

EXIT_USER_ERROR = 1
#: A gate refused (``shadow gate``: the candidate may not be promoted yet).
EXIT_NOT_ALLOWED = 3
EXIT_INTERRUPTED = 130

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant id (default: $LIFTSTREAM_TENANT, else 'demo')."),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

USER_ERRORS: tuple[type[Exception], ...] = (
    InvalidInputError,
    PlatformUnavailableError,
    UnknownExperimentError,
    ResultsServiceError,
    DeliveryError,
    TimeoutError,
    AccessDeniedError,
    ControlServiceError,
)


def tenant_or_default(option: str | None) -> str:
    """The ``--tenant`` given, else the default tenant."""
    return option or default_tenant()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can act on become a message and exit code 1."""
    from liftstream_cli.platform import PlatformFailure  # the supervisor only when needed

    try:
        yield
    except (*USER_ERRORS, PlatformFailure) as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
