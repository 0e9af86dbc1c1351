"""A FastAPI app with its own sign-in, and jobwire mounted at /realtime for live job status.

    .venv/bin/python examples/fastapi_app/app.py          # http://127.0.0.1:8000

Sign in as alice or bob, press "Start job": the app runs the job as an asyncio task that
publishes its progress in-process, and the page follows it through /realtime/static/jobwire.js,
signed in by the app's own session cookie (no jobwire token anywhere)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import pages
import uvicorn
from accounts import COOKIE, Sessions
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from work import Jobs

from jobwire.asgi import Jobwire

HERE = Path(__file__).resolve().parent


def create_app(*, steps: int = 10, step_seconds: float = 0.5) -> FastAPI:
    sessions = Sessions()
    # The secret signs jobwire tokens, which this app never hands out (its pages use the
    # session cookie, its jobs publish in-process): a random one unless JOBWIRE_SECRET is set.
    realtime = Jobwire(secret=os.environ.get("JOBWIRE_SECRET") or secrets.token_urlsafe(32),
                       authenticate=sessions.jobwire_user)
    jobs = Jobs(realtime, steps=steps, step_seconds=step_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A mounted app gets no lifespan events of its own: the host starts and stops it.
        async with realtime.running():
            yield
            await jobs.cancel_all()  # before jobwire stops: their last publishes still work

    app = FastAPI(lifespan=lifespan)
    app.mount("/realtime", realtime)
    app.mount("/assets", StaticFiles(directory=HERE / "static"), name="assets")

    def signed_in(request: Request) -> str | None:
        return sessions.user(request.cookies.get(COOKIE))

    @app.get("/")
    async def home(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(pages.jobs(user))

    @app.get("/login")
    async def login_form() -> Response:
        return HTMLResponse(pages.login())

    @app.post("/login")
    async def login(request: Request) -> Response:
        # An urlencoded form, parsed by hand: FastAPI's Form() would need python-multipart.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        session_id = sessions.sign_in(form.get("username", [""])[0],
                                      form.get("password", [""])[0])
        if session_id is None:
            return HTMLResponse(pages.login("Wrong username or password."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        # HttpOnly: page scripts never see it. SameSite=Lax: other sites cannot make the
        # browser send it with a POST (no cross-site job starts) or a cross-site WebSocket.
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax", path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        sessions.sign_out(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.post("/jobs")
    async def start_job(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return JSONResponse({"jobId": await jobs.start(user)}, status_code=202)

    app.state.realtime = realtime
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=10, help="steps per job")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="time per step")
    args = parser.parse_args()
    app = create_app(steps=args.steps, step_seconds=args.step_seconds)
    print(f"Open http://{args.host}:{args.port}/ and sign in as alice or bob", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
