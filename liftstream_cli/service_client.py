"""What the CLI's HTTP clients share: one service's base URL, the bearer key, a timeout.

``ServiceClient`` is the base of the control (``control_api``), results (``results_api``)
and collector-import (``import_events``) clients. It refuses a missing URL with the
service's hint (``PlatformUnavailableError``), sends ``Authorization: Bearer <key>``, turns
a request that does not reach the service into ``PlatformUnavailableError`` naming the
service, its address and the hint, and closes its connections as a context manager.
``detail`` reads the explanation out of an error answer, the same way for every service.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import httpx

from liftstream.errors import PlatformUnavailableError


class ServiceClient:
    #: The service, as error messages name it ("the control service").
    service: ClassVar[str]
    #: What to do when the service is not known or does not answer.
    hint: ClassVar[str]
    #: What a missing URL means (default: "no <service> is known").
    unknown: ClassVar[str] = ""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not base_url:
            unknown = self.unknown or f"no {self.service} is known"
            raise PlatformUnavailableError(f"{unknown}: {self.hint}")
        self.base_url = base_url.rstrip("/")
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={**auth, **(headers or {})},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        """The service's answer to ``method path``; PlatformUnavailableError if none came."""
        try:
            return self._http.request(method, path, **request)
        except httpx.TransportError as error:
            raise PlatformUnavailableError(
                f"the {self.service} at {self.base_url} does not answer ({error}): {self.hint}"
            ) from None


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def detail(response: httpx.Response) -> str:
    """The service's explanation of an error answer (its ``detail``), else its text."""
    body = json_or_none(response)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text.strip()[:500] or response.reason_phrase
