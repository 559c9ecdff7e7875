"""The dashboard's pages about delivery: flags (kill switch and ramp for admin keys), rollouts
(the plan, the timeline of the controller's decisions with their evidence, and a person's
approve / pause / resume / abort), shadow tests and dead letters. Each change needs an
admin session, the session's CSRF token and a reason, and is made by the control service
with the session's key."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from schemas.identifiers import Key
from schemas.limits import MAX_TEXT_CHARS
from services.dashboard import views
from services.dashboard.pages import Pages, SignedIn
from services.dashboard.security import check_csrf
from services.dashboard.sessions import Session

#: What a person may do to a rollout from the dashboard (the control API's commands).
ROLLOUT_ACTIONS = ("approve", "pause", "resume", "abort")


def add_delivery_pages(app: FastAPI, pages: Pages) -> None:
    platform, render, ask = pages.platform, pages.render, pages.ask

    # Flags.

    @app.get("/flags", response_class=HTMLResponse)
    async def flags(request: Request, session: SignedIn) -> HTMLResponse:
        listed = await ask(session, platform.flags(session.api_key, session.tenant_id))
        return render(request, "flags.html", flags=listed)

    @app.get("/flags/{key}", response_class=HTMLResponse)
    async def flag(request: Request, session: SignedIn, key: Key) -> HTMLResponse:
        api_key, tenant = session.api_key, session.tenant_id
        state, history = await asyncio.gather(
            ask(session, platform.flag(api_key, tenant, key)),
            ask(session, platform.history(api_key, tenant, "flags", key)),
        )
        return render(request, "flag.html", flag=state, history=list(reversed(history)))

    @app.post("/flags/{key}/kill")
    async def kill_flag(
        request: Request,
        session: SignedIn,
        key: Key,
        reason: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = "",
        killed: Annotated[bool, Form()] = True,
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        return await flag_change(
            request, session, key, "kill", {"killed": killed, "reason": reason}, csrf_token
        )

    @app.post("/flags/{key}/ramp")
    async def ramp_flag(
        request: Request,
        session: SignedIn,
        key: Key,
        ramp: Annotated[float, Form(ge=0, le=100, allow_inf_nan=False)],
        reason: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = "",
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        return await flag_change(
            request, session, key, "ramp", {"ramp": ramp, "reason": reason}, csrf_token
        )

    async def flag_change(
        request: Request,
        session: Session,
        key: str,
        action: str,
        body: dict[str, Any],
        csrf_token: str,
    ) -> Response:
        check_csrf(request, session.csrf_token, csrf_token)
        _admin_with_reason(session, str(body.get("reason", "")))
        await ask(
            session, platform.flag_action(session.api_key, session.tenant_id, key, action, body)
        )
        if action == "kill":
            session.flash("Kill switch set." if body["killed"] else "Kill switch cleared.")
        else:
            session.flash(f"Ramp set to {body['ramp']:g}%.")
        return RedirectResponse(f"/flags/{key}", status_code=303)

    # Rollouts.

    @app.get("/rollouts", response_class=HTMLResponse)
    async def rollouts(request: Request, session: SignedIn) -> HTMLResponse:
        listed = await ask(session, platform.rollouts(session.api_key, session.tenant_id))
        return render(request, "rollouts.html", rollouts=listed)

    @app.get("/rollouts/{key}", response_class=HTMLResponse)
    async def rollout(request: Request, session: SignedIn, key: Key) -> HTMLResponse:
        api_key, tenant = session.api_key, session.tenant_id
        state, decisions = await asyncio.gather(
            ask(session, platform.rollout(api_key, tenant, key)),
            ask(session, platform.rollout_decisions(api_key, tenant, key)),
        )
        return render(
            request,
            "rollout.html",
            rollout=state,
            timeline=views.rollout_timeline(state, decisions),
            decisions=len(decisions),
        )

    @app.post("/rollouts/{key}/{action}")
    async def rollout_command(
        request: Request,
        session: SignedIn,
        key: Key,
        action: str,
        reason: Annotated[str, Form(max_length=MAX_TEXT_CHARS)] = "",
        csrf_token: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        check_csrf(request, session.csrf_token, csrf_token)
        if action not in ROLLOUT_ACTIONS:
            raise HTTPException(status_code=404, detail=f"no rollout action '{action}'")
        _admin_with_reason(session, reason)
        await ask(
            session,
            platform.rollout_action(
                session.api_key, session.tenant_id, key, action, {"reason": reason}
            ),
        )
        session.flash(f"Rollout {action}: done.")
        return RedirectResponse(f"/rollouts/{key}", status_code=303)

    # Shadow tests.

    @app.get("/shadows", response_class=HTMLResponse)
    async def shadows(
        request: Request, session: SignedIn, name: Annotated[Key | None, Query()] = None
    ) -> Response:
        if name:
            return RedirectResponse(f"/shadows/{name}", status_code=303)
        return render(request, "shadows.html", shadow=None, name="")

    @app.get("/shadows/{name}", response_class=HTMLResponse)
    async def shadow(request: Request, session: SignedIn, name: Key) -> HTMLResponse:
        results = await ask(session, platform.shadow(session.api_key, session.tenant_id, name))
        return render(request, "shadows.html", shadow=results, name=name)

    # Dead letters.

    @app.get("/deadletters", response_class=HTMLResponse)
    async def deadletters(request: Request, session: SignedIn) -> HTMLResponse:
        rejected = await ask(session, platform.deadletters(session.api_key, session.tenant_id))
        return render(request, "deadletters.html", rejected=rejected)


def _admin_with_reason(session: Session, reason: str) -> None:
    """A change needs an admin session and a reason (checked here, and again by the
    control service)."""
    if not session.is_admin:
        raise HTTPException(
            status_code=403, detail=f"key {session.key_id} is a read key: changes need admin"
        )
    if not reason.strip():
        raise HTTPException(status_code=422, detail="reason: give a reason for the change")
