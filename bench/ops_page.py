"""The ops page with 1,000,000 posts, against the same page with 1,000.

On a scratch database it loads the table with one INSERT ... SELECT
generate_series per 100,000 rows (the triggers run: content checks, events,
notifications), serves the app with uvicorn, and times:

- with httpx: time to first byte and to the last byte of the page, median of
  9 requests after 2 to warm up;
- in Chromium: DOMContentLoaded and load, median of 5 navigations.

Counts per status are read on every request (the page's 2 s cache is turned
off), so the figures are the worst case, not the cached one.

    python -m bench.ops_page [--rows 1000000] [DATABASE_URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import psycopg
from playwright.sync_api import sync_playwright

from app.config import Settings
from app.database import database_url
from app.web import create_app
from app.web.login import OpsSettings
from app.web.ops_view import CountsCache
from app.web.passwords import Users
from app.web.settings import WebSettings
from bench.worker import scratch_database
from sandbox.core import serve_in_thread

PASSWORD = "bench-password-0123"
CHUNK = 100_000
PAGES = {
    "first page": "/ops/social-queue",
    "filtered page": "/ops/social-queue?status=failed&platform=x",
    "text search": "/ops/social-queue?q=needle",
}
# Mostly history, as a big table is: posted, cancelled, failed.
LOAD = """
INSERT INTO social_queue (profile_id, platform, content, scheduled_at, status,
                          attempts, posted_at, remote_id, error_kind, last_error)
SELECT 'profile-' || (n %% 500),
       (ARRAY['x', 'linkedin', 'facebook'])[1 + n %% 3],
       jsonb_build_object('text', 'Post number ' || n || ' about launch day'
                          || CASE WHEN n %% 50000 = 0 THEN ' needle' ELSE '' END),
       now() - make_interval(secs => n * 30),
       s.status::social_status,
       1,
       CASE WHEN s.status = 'posted' THEN now() END,
       CASE WHEN s.status = 'posted' THEN 'r' || n END,
       CASE WHEN s.status = 'failed' THEN 'invalid'::social_error_kind END,
       CASE WHEN s.status = 'failed' THEN 'rejected by the platform' END
  FROM generate_series(%s::bigint, %s::bigint) AS n,
       LATERAL (SELECT CASE WHEN n %% 10 < 7 THEN 'posted'
                            WHEN n %% 10 < 9 THEN 'cancelled'
                            ELSE 'failed' END AS status) AS s
"""


def load(url: str, start: int, stop: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for low in range(start, stop, CHUNK):
            conn.execute(LOAD, (low, min(low + CHUNK, stop) - 1))
        conn.execute("ANALYZE social_queue")
    return time.perf_counter() - started


def http_times(base: str, cookies: httpx.Cookies, path: str) -> tuple[float, float]:
    """Median (TTFB, total) in ms."""
    firsts, totals = [], []
    with httpx.Client(base_url=base, cookies=cookies, timeout=60) as client:
        for n in range(11):
            started = time.perf_counter()
            with client.stream("GET", path) as response:
                assert response.status_code == 200, response.status_code
                chunks = response.iter_bytes()
                next(chunks)
                first = time.perf_counter()
                for _ in chunks:
                    pass
            if n >= 2:
                firsts.append((first - started) * 1000)
                totals.append((time.perf_counter() - started) * 1000)
    return statistics.median(firsts), statistics.median(totals)


def browser_times(base: str, path: str) -> tuple[float, float]:
    """Median (DOMContentLoaded, load) in ms."""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless=new", "--no-sandbox", "--disable-gpu"],
        )
        page = browser.new_page(base_url=base)
        page.goto("/ops/login")
        page.fill("input[name=user]", "ops")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ops/social-queue")
        dcl, loaded = [], []
        for _ in range(5):
            page.goto(path, wait_until="load")
            timing = page.evaluate(
                "(() => { const t = performance.getEntriesByType('navigation')[0];"
                " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()"
            )
            dcl.append(timing[0])
            loaded.append(timing[1])
        browser.close()
    return statistics.median(dcl), statistics.median(loaded)


def measure(url: str) -> dict[str, tuple[float, float, float, float]]:
    app = create_app(
        Settings(database_url=url),
        WebSettings(webhook_secrets=("bench-secret-0123456789",)),
        environ={},
        ops_settings=OpsSettings(users=Users(password=PASSWORD)),
    )
    app.state.counts_cache = CountsCache(ttl=0)  # worst case: count every time
    results = {}
    with serve_in_thread(app) as base:
        with httpx.Client(base_url=base) as client:
            form = client.get("/ops/login")
            csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
            client.post(
                "/ops/login", data={"user": "ops", "password": PASSWORD, "csrf": csrf}
            )
            cookies = client.cookies
        for name, path in PAGES.items():
            results[name] = (
                *http_times(base, cookies, path),
                *browser_times(base, path),
            )
    return results


def report(label: str, rows: int, figures: dict[str, tuple[float, ...]]) -> None:
    print(f"\n{label}: {rows:,} rows")
    print(f"  {'page':<14} {'TTFB ms':>9} {'total ms':>9} {'DCL ms':>8} {'load ms':>8}")
    for name, (ttfb, total, dcl, loaded) in figures.items():
        print(f"  {name:<14} {ttfb:>9.1f} {total:>9.1f} {dcl:>8.1f} {loaded:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("url", nargs="?", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()

    server = database_url(Settings(database_url=args.url))
    with scratch_database(server) as url:
        load(url, 1, args.baseline + 1)
        baseline = measure(url)
        report("baseline", args.baseline, baseline)
        seconds = load(url, args.baseline + 1, args.rows + 1)
        print(f"\nloaded {args.rows - args.baseline:,} more rows in {seconds:.0f} s")
        big = measure(url)
    report("large", args.rows, big)
    print("\nratios large / baseline (TTFB, total, DCL, load):")
    for name in PAGES:
        ratios = [b / a for a, b in zip(baseline[name], big[name], strict=True)]
        print(f"  {name:<14} " + "  ".join(f"{r:5.2f}x" for r in ratios))


if __name__ == "__main__":
    main()
