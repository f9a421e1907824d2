"""The season dashboard at `/`: one page in Arabic (right to left) and English, its script and its style, served
from the package (`api/static/dashboard/`). It reads the API as the signed-in agency does, with the agency's key, so
each page shows what the API lets that role and scope read, and nothing else decides it.

Its policy forbids the page any address but the server's own: no script, style, font, image or request leaves it."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/dashboard"
HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@functools.cache
def _page() -> str:
    return (resources.files("hajj_ledger.api") / "static" / "dashboard" / "index.html").read_text(encoding="utf-8")


def add_dashboard(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(packages=[("hajj_ledger.api", "static/dashboard")]), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(_page(), headers={"Content-Security-Policy": POLICY, **HEADERS})
