"""The season dashboard on the demo store, in Debian's Chromium (Playwright; `playwright install` is never run): its
first paint by Chromium's own timing, for `make bench`, and the screenshots of its main pages in docs/.

    python bench/dashboard.py --screenshots docs   # `make screenshots`: the demo store made in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/dashboard.py`: the bench package is importable, as for run.py
from bench.harness import CLI, SMOKE, Sizes, now, summarise  # noqa: E402
from bench.servers import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# The main pages, as each is shown to the agency it is for: (file, role, address, language).
PAGES = (
    ("dashboard-glance.png", "ministry", "#/", "ar"),
    ("dashboard-glance-en.png", "ministry", "#/", "en"),
    ("dashboard-glance-mission.png", "mission", "#/", "ar"),  # each agency's season at a glance: what it may read
    ("dashboard-glance-company.png", "company", "#/", "en"),
    ("dashboard-glance-moh.png", "moh", "#/", "en"),
    ("dashboard-journey.png", "mission", "#/journey/{journey}", "ar"),
    ("dashboard-worklist.png", "jawazat", "#/work", "en"),
    ("dashboard-view.png", "ministry", "#/views/journey_status?stage=housed&limit=12", "en"),
    ("dashboard-offers.png", "mission", "#/views/service_offers?min_free=1&limit=12", "ar"),
)


# Every table of the page drawn, or refused (the feed's stream stays open: the network is never idle). A function:
# Playwright evaluates a bare expression again at each poll, which the page's policy (no eval) refuses.
TABLES_DRAWN = (
    "() => [...document.querySelectorAll('.view')].every(v => v.querySelector('.pager, [data-refused], .error'))"
)


@contextmanager
def demo_server(pilgrims: int) -> Iterator[tuple[str, dict[str, dict[str, str]], Path]]:
    """`hajj-ledger demo` (its embedded store, in a folder of its own) served by `hajj-ledger serve --demo-keys`: the
    address, the demo key of each role and the folder."""
    with tempfile.TemporaryDirectory(prefix="hajj-dashboard-") as folder:
        here = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAJJ_LEDGER_") or k.endswith("MASTER_KEYS")}
        subprocess.run(
            [str(CLI), "demo", "--pilgrims", str(pilgrims)], cwd=here, env=env, check=True, stdout=subprocess.DEVNULL
        )
        port = free_port()
        with (here / "serve.log").open("w") as log:
            server = subprocess.Popen(
                [str(CLI), "serve", "--demo-keys", "--port", str(port)],
                cwd=here,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the demo server did not start: {(here / 'serve.log').read_text()}")
                time.sleep(0.2)
            yield base, json.loads((here / "var" / "demo-keys.json").read_text()), here
        finally:
            server.terminate()
            server.wait(timeout=20)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def _signed_in(browser: Any, key: str, language: str) -> Any:
    """A browser session whose tab holds the key (and the language) as the sign-in form leaves them."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    script = f"sessionStorage.setItem('hajj-ledger.key', {json.dumps(key)});"
    context.add_init_script(script + f"sessionStorage.setItem('hajj-ledger.language', {json.dumps(language)});")
    return context


def first_paint(base: str, keys: dict[str, dict[str, str]], runs: int) -> dict[str, Any]:
    """The glance page loaded afresh `runs` times (a new session each, signed in as the ministry): Chromium's
    first paint and first contentful paint, and until the page's figures are drawn, in milliseconds."""
    paints: list[float] = []
    contentful: list[float] = []
    drawn: list[float] = []
    with chromium() as browser:
        for _ in range(runs + 1):  # the first load warms the server's caches and is not counted
            context = _signed_in(browser, keys["ministry"]["key"], "ar")
            page = context.new_page()
            page.goto(f"{base}/#/")
            page.wait_for_selector("#page[data-ready=glance]")
            timing = page.evaluate(
                """() => {
                    const paints = performance.getEntriesByType('paint');
                    const paint = Object.fromEntries(paints.map(e => [e.name, e.startTime]));
                    return [paint['first-paint'], paint['first-contentful-paint'], performance.now()];
                }"""
            )
            context.close()
            paints.append(timing[0])
            contentful.append(timing[1])
            drawn.append(timing[2])
    paints, contentful, drawn = paints[1:], contentful[1:], drawn[1:]
    return {
        "rate": statistics.median(paints),  # as the suite's figures: "rate" is the median's source
        "first_contentful_paint_ms": statistics.median(contentful),
        "drawn_ms": statistics.median(drawn),
        "paints_ms": paints,
    }


def first_paint_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """The dashboard's first paint on the demo store `make run` makes: the glance page loaded afresh 9 times
    (--smoke: 2, on a demo season of 60 pilgrims), signed in as the ministry."""
    runs = 2 if sizes is SMOKE else 9
    with demo_server(60 if sizes is SMOKE else 3000) as (base, keys, _):
        figure = first_paint(base, keys, runs)
    return {**summarise([{**figure, "rss_mb": 0.0}]), "runs": runs, "when": now()}


def screenshots(base: str, keys: dict[str, dict[str, str]], out: Path) -> list[Path]:
    journey = _a_whole_journey(base, keys["mission"]["key"])
    written = []
    with chromium() as browser:
        for name, role, address, language in PAGES:
            context = _signed_in(browser, keys[role]["key"], language)
            page = context.new_page()
            page.goto(f"{base}/{address.format(journey=journey)}")
            ready = address.split("/")[1].split("?")[0] or "glance"
            page.wait_for_selector(f"#page[data-ready={ready}]")
            page.wait_for_function(TABLES_DRAWN)  # the worklists' and views' tables fill in after
            if ready == "glance":  # the latest events: the feed's backlog is found before its stream opens
                page.wait_for_selector("#live[data-state=live]")
                page.wait_for_timeout(500)
            page.screenshot(path=str(out / name), full_page=name != "dashboard-journey.png")
            context.close()
            written.append(out / name)
    return written


def _a_whole_journey(base: str, key: str) -> str:
    """A journey of the demo mission that has departed (its timeline runs the whole way)."""
    found = httpx.get(
        f"{base}/v1/views/journey_status",
        params={"stage": "departed", "limit": 1},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["items"]
    return str(found[0]["journey_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshots", type=Path, required=True, help="the folder the PNGs go to (docs)")
    parser.add_argument("--pilgrims", type=int, default=3000, help="the demo season's size (as `make run`'s)")
    args = parser.parse_args()
    os.environ.setdefault("HAJJ_LEDGER_MASTER_KEYS", "screenshots-1:" + "S" * 43)
    with demo_server(args.pilgrims) as (base, keys, _):
        for path in screenshots(base, keys, args.screenshots):
            print(path)


if __name__ == "__main__":
    main()
