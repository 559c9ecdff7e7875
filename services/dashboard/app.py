"""The web dashboard (FastAPI + Jinja2, server-rendered, htmx for partial updates).

This module: the app, its error pages, sign in / sign out, the experiments and an
experiment (scorecard, banners, progress, charts, definition and history); flags,
rollouts, shadow tests and dead letters are in ``delivery_pages``. Every figure and every
right comes from the results and control services, asked with the signed-in user's key
(``platform_api``); the dashboard shows only the tenant of that key. Sessions live on
the server (``sessions``); headers and CSRF in ``security``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import jinja2
from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from schemas.identifiers import Key
from services.dashboard import charts, views
from services.dashboard.delivery_pages import add_delivery_pages
from services.dashboard.pages import Pages, SignedIn, SignInRequired
from services.dashboard.platform_api import ApiError, PlatformApi
from services.dashboard.security import SecurityHeaders, check_csrf
from services.dashboard.sessions import COOKIE_NAME, Session, SessionStore

HERE = Path(__file__).parent
#: Experiments shown on one page of the list (each row asks the results service once).
EXPERIMENTS_PER_PAGE = 50
#: Calls to the services made at once for one list page.
LIST_CONCURRENCY = 8
PRE_SESSION_COOKIE = "liftstream_signin"
#: Changes of an experiment shown on its page, the newest (the CLI's `history` has all).
HISTORY_SHOWN = 50
T = TypeVar("T")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=views.percent,
        number=views.number,
        p_value=views.p_value,
        raw=lambda value: "" if value is None else json.dumps(value),
        pretty_json=lambda value: json.dumps(value, indent=2, sort_keys=False),
    )
    return environment


def create_app(
    platform: PlatformApi, sessions: SessionStore | None = None, secure_cookies: bool = False
) -> FastAPI:
    """The dashboard over ``platform``; ``secure_cookies`` marks the session cookie Secure
    (set it when the dashboard is served over HTTPS)."""
    app = FastAPI(title="liftstream dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    environment = _environment()
    store = sessions or SessionStore()
    app.state.sessions = store

    def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        page = environment.get_template(template).render(
            request=request,
            session=session,
            csrf_token=session.csrf_token if session else "",
            flashes=session.take_flashes() if session else [],
            **context,
        )
        return HTMLResponse(page, status_code=status)

    async def ask(session: Session, call: Awaitable[T]) -> T:
        """A service call; a key the services no longer accept ends the session."""
        try:
            return await call
        except ApiError as error:
            if error.status == 401:
                store.end(session.session_id)
                raise SignInRequired from None
            raise

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _error: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(ApiError)
    async def service_refused(request: Request, error: ApiError) -> HTMLResponse:
        return render(request, "error.html", status=error.status, error=error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'][1:])}: {item['msg']}"
            for item in error.errors()
        )
        return render(request, "error.html", status=422, error=ApiError(422, problems, "dashboard"))

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> HTMLResponse:
        return render(
            request,
            "error.html",
            status=error.status_code,
            error=ApiError(error.status_code, str(error.detail), "dashboard"),
        )

    @app.get("/charts.css")
    async def chart_stylesheet() -> Response:
        return Response(
            charts.chart_stylesheet(),
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Signing in and out.

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> HTMLResponse:
        return _login_form(request, render)

    @app.post("/login")
    async def login(
        request: Request,
        api_key: Annotated[str, Form(max_length=512)] = "",
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        check_csrf(request, request.cookies.get(PRE_SESSION_COOKIE, ""), csrf_token)
        api_key = api_key.strip()
        if not api_key:
            return _login_form(request, render, "Enter an API key.", 422)
        try:
            who = await platform.whoami(api_key)
        except ApiError as error:
            if error.status in (401, 403):
                return _login_form(request, render, "This API key is unknown or revoked.", 401)
            raise
        if who.get("role") not in ("admin", "read"):
            return _login_form(
                request, render, "Sign in with a read or admin key (ingest keys only send).", 403
            )
        session = store.create(api_key, who["key_id"], who["tenant_id"], who["role"])
        response = RedirectResponse("/experiments", status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            session.session_id,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
            path="/",
        )
        response.delete_cookie(PRE_SESSION_COOKIE, path="/login")
        return response

    @app.post("/logout")
    async def logout(
        request: Request,
        session: SignedIn,
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        check_csrf(request, session.csrf_token, csrf_token)
        store.end(session.session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response

    # Experiments.

    @app.get("/")
    async def home(session: SignedIn) -> Response:
        return RedirectResponse("/experiments", status_code=303)

    @app.get("/experiments", response_class=HTMLResponse)
    async def experiments(
        request: Request, session: SignedIn, page: Annotated[int, Query(ge=1, le=1000)] = 1
    ) -> HTMLResponse:
        key, tenant = session.api_key, session.tenant_id
        defined = await ask(session, platform.control_experiments(key, tenant))
        shown = defined[(page - 1) * EXPERIMENTS_PER_PAGE : page * EXPERIMENTS_PER_PAGE]
        limit = asyncio.Semaphore(LIST_CONCURRENCY)

        async def row(state: dict[str, Any]) -> dict[str, Any]:
            experiment = state["experiment"]
            async with limit:
                scorecard = await _maybe(platform.scorecard(key, tenant, state["key"]))
                history = await _maybe(platform.history(key, tenant, "experiments", state["key"]))
            return {
                "state": state,
                "experiment": experiment,
                "scorecard": scorecard,
                "days": views.days_running(history or [], experiment["status"]),
            }

        rows = await asyncio.gather(*(row(state) for state in shown))
        return render(
            request,
            "experiments.html",
            rows=rows,
            page=page,
            pages=max(1, -(-len(defined) // EXPERIMENTS_PER_PAGE)),
        )

    async def experiment_context(session: Session, key: str, scale: str) -> dict[str, Any]:
        api_key, tenant = session.api_key, session.tenant_id
        scorecard, control, history = await asyncio.gather(
            ask(session, platform.scorecard(api_key, tenant, key, scale)),
            ask(session, platform.control_experiment(api_key, tenant, key)),
            ask(session, platform.history(api_key, tenant, "experiments", key)),
        )
        return {
            "key": key,
            "scale": scale,
            "scorecard": scorecard,
            "control": control,
            "experiment": control["experiment"],
            "history": list(reversed(history))[:HISTORY_SHOWN],
            "history_total": len(history),
            "rows": views.metric_rows(scorecard),
            "banners": views.banners(scorecard),
            "ship_blocked": views.ship_blocked(scorecard),
            "progress": views.progress(scorecard),
            "bar_width": views.BAR_WIDTH,
        }

    @app.get("/experiments/{key}", response_class=HTMLResponse)
    async def experiment(
        request: Request,
        session: SignedIn,
        key: Key,
        scale: Annotated[str, Query(pattern="^(relative|absolute)$")] = "relative",
        metric: Annotated[Key | None, Query()] = None,
    ) -> HTMLResponse:
        context = await experiment_context(session, key, scale)
        metrics = [m["name"] for m in context["experiment"]["metrics"]]
        chosen = metric if metric in metrics else (metrics[0] if metrics else None)
        return render(request, "experiment.html", metrics=metrics, chosen=chosen, **context)

    @app.get("/experiments/{key}/scorecard", response_class=HTMLResponse)
    async def scorecard_part(
        request: Request,
        session: SignedIn,
        key: Key,
        scale: Annotated[str, Query(pattern="^(relative|absolute)$")] = "relative",
    ) -> HTMLResponse:
        api_key, tenant = session.api_key, session.tenant_id
        scorecard = await ask(session, platform.scorecard(api_key, tenant, key, scale))
        return render(
            request,
            "scorecard.html",
            key=key,
            scale=scale,
            scorecard=scorecard,
            rows=views.metric_rows(scorecard),
            bar_width=views.BAR_WIDTH,
        )

    @app.get("/experiments/{key}/health", response_class=HTMLResponse)
    async def health_part(request: Request, session: SignedIn, key: Key) -> HTMLResponse:
        """The pipeline's counts (a heavy read of the results service, so after the page);
        then the charts load (``healthDone``), so that the two heavy reads do not collide."""
        done = {"HX-Trigger-After-Settle": "healthDone"}
        try:
            health = await ask(session, platform.health(session.api_key, session.tenant_id, key))
        except ApiError as error:
            busy = error.status in (429, 503)
            page = render(request, "health.html", key=key, busy=busy, error=error, health=None)
            if not busy:
                page.headers.update(done)
            return page
        page = render(
            request,
            "health.html",
            key=key,
            busy=False,
            error=None,
            health=health,
            banners=views.health_banners(health),
        )
        page.headers.update(done)
        return page

    @app.get("/experiments/{key}/charts", response_class=HTMLResponse)
    async def charts_part(
        request: Request,
        session: SignedIn,
        key: Key,
        metric: Annotated[Key | None, Query()] = None,
    ) -> HTMLResponse:
        api_key, tenant = session.api_key, session.tenant_id
        try:
            daily = await ask(session, platform.daily(api_key, tenant, key))
        except ApiError as error:
            if error.status not in (429, 502, 503):
                raise
            return render(request, "charts.html", key=key, metric=metric, busy=error.detail)
        chosen = metric or next((m["metric"] for d in daily["days"] for m in d["metrics"]), None)
        return render(
            request,
            "charts.html",
            key=key,
            metric=chosen,
            busy=None,
            daily=daily,
            effect=charts.effect_chart(daily, chosen) if chosen else None,
            units=charts.units_chart(daily),
        )

    add_delivery_pages(app, Pages(platform, render, ask))

    return app


async def _maybe(call: Awaitable[T]) -> T | None:
    """The answer, or None when the service refused (the page shows what it has)."""
    try:
        return await call
    except ApiError:
        return None


def _login_form(
    request: Request, render: Any, message: str | None = None, status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response: HTMLResponse = render(
        request, "login.html", status=status, message=message, signin_token=token
    )
    response.set_cookie(
        PRE_SESSION_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600
    )
    return response
