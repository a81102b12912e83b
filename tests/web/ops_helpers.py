"""Logging in to the ops page from a test, and reading what it answers."""

from __future__ import annotations

import re

import httpx

from app.web.passwords import Users

OPS_PASSWORD = "correct horse battery staple"
OPS_USERS = Users(password=OPS_PASSWORD)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_in(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def log_in(
    client: httpx.AsyncClient, user: str = "ops", password: str = OPS_PASSWORD
) -> httpx.Response:
    """Log in as a browser would: fetch the form, post it with its token."""
    form = await client.get("/ops/login")
    return await client.post(
        "/ops/login",
        data={"user": user, "password": password, "csrf": csrf_in(form.text)},
    )


async def page_csrf(client: httpx.AsyncClient) -> str:
    """The session's CSRF token, as the queue page carries it."""
    page = await client.get("/ops/social-queue")
    assert page.status_code == 200
    return csrf_in(page.text)
