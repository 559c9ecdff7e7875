"""What the dashboard's page modules share: the signed-in session as a FastAPI dependency
(``SignedIn``; no session sends the browser to sign in), and ``Pages``, the way a page
renders a template and asks the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from services.dashboard.platform_api import PlatformApi
from services.dashboard.sessions import COOKIE_NAME, Session

T = TypeVar("T")


class SignInRequired(Exception):
    """No live session: the browser goes to the sign-in page."""


def signed_in(request: Request) -> Session:
    """The request's live session (kept on ``request.state`` for the page), or sign in."""
    session = request.app.state.sessions.get(request.cookies.get(COOKIE_NAME))
    if session is None:
        raise SignInRequired
    request.state.session = session
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


@dataclass(frozen=True)
class Pages:
    """``render(request, template, status=200, **context)`` an HTML answer;
    ``ask(session, call)`` a service call, ending the session if its key is refused."""

    platform: PlatformApi
    render: Callable[..., HTMLResponse]
    ask: Callable[[Session, Awaitable[Any]], Awaitable[Any]]
