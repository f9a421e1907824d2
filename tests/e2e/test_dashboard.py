"""The season dashboard in a real browser: Debian's Chromium driven by Playwright, against `hajj-ledger serve` on a
small store recorded over the API by the roles that own each step. Each agency signs in with its key and sees what
the API lets it read; the page is Arabic and right to left until switched; a step recorded over the API shows on an
open page without a reload; and no request of any page leaves 127.0.0.1."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.conftest import IN_CI
from tests.support import T0, as_json, building_fields, offer_fields, serving

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `playwright install` is never run
pytestmark = [
    pytest.mark.xdist_group("dashboard"),  # one server and one browser for the module
    pytest.mark.skipif(not IN_CI and not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]
SCOPES = {"mission": "mission-IDN-1", "company": "company-1", "other_mission": "mission-EGY-2"}
ROLES = ("mission", "company", "mofa", "gaca", "jawazat", "customs", "wukala", "naqaba", "moh", "ministry", "amanah",
         "civil_defence")  # fmt: skip


@dataclass
class Store:
    base: str
    keys: dict[str, str]
    received: str  # journey of mission-IDN-1 received at the port: awaiting transport
    cleared: str  # journey of mission-IDN-1 through customs: the next step is recorded by the tests
    other: str  # journey of mission-EGY-2
    head: int = 0  # the position of the last step recorded
    contract: str = ""  # mission-IDN-1's signed contract with company-1, its journeys' package

    def post(self, role: str, path: str, body: dict[str, Any], at: datetime = T0) -> dict[str, Any]:
        done = httpx.post(
            f"{self.base}/v1{path}", json={"occurred_at": at.isoformat(), **body},
            headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30,
        )  # fmt: skip
        assert done.status_code == 201, (path, done.text)
        answer: dict[str, Any] = done.json()
        self.head = max(self.head, answer["position"])
        return answer


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    directory = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{directory}/ledger.sqlite3"
    engine = engine_for(url)
    upgrade(engine)
    keys = {}
    with engine.begin() as connection:
        for role in ROLES:
            keys[role] = agencies.add(connection, Role(role), f"dashboard {role}", SCOPES.get(role))[1]
        keys["other_mission"] = agencies.add(connection, Role.MISSION, "other", SCOPES["other_mission"])[1]
    engine.dispose()
    with serving({**os.environ, "HAJJ_LEDGER_DATABASE_URL": url}, directory / "serve.log") as [base]:
        seeded = Store(base, keys, "", "", "")
        seeded.contract = _market(seeded)
        seeded.received = _journey(seeded, "mission", "IDN", "SITI NURHAYATI", through="received-at-port")
        seeded.cleared = _journey(seeded, "mission", "IDN", "AHMAD DAHLAN", through="customs-cleared")
        seeded.other = _journey(seeded, "other_mission", "EGY", "MOHAMED SALAH", through=None)
        for view in ("journey_status", "season_funnel", "awaiting_transport"):  # the pages read a store at rest
            caught_up = httpx.get(
                f"{base}/v1/views/{view}", params={"min_position": seeded.head, "limit": 1},
                headers={"Authorization": f"Bearer {keys['ministry']}"}, timeout=30,
            )  # fmt: skip
            assert caught_up.status_code == 200, caught_up.text
        yield seeded


def _market(store: Store) -> str:
    """A building of the company licensed and inspected, its offer, and the mission's contract on it, signed."""
    company = SCOPES["company"]
    building = store.post("amanah", "/buildings", as_json(building_fields(50, company_id=company)))["aggregate_id"]
    store.post("civil_defence", f"/buildings/{building}/inspection-passed", {"findings": "compliant"})
    offer = store.post("company", "/offers", as_json(offer_fields(50, [building])))["aggregate_id"]
    contract: str = store.post("mission", "/contracts", {"offer_id": offer, "places": 50})["aggregate_id"]
    store.post("company", f"/contracts/{contract}/sign", {})
    return contract


def _journey(store: Store, mission: str, country: str, name: str, through: str | None) -> str:
    identity = {
        "name_arabic": "حاج", "name_latin": name, "passport_number": f"P{uuid4().int % 10**7:07d}",
        "passport_country": country, "nationality": country, "date_of_birth": "1961-02-03", "gender": "female",
    }  # fmt: skip
    body = {"pilgrim_id": str(uuid4()), "season": 1446, "country": country, "identity": identity}
    journey = str(store.post(mission, "/journeys", body)["aggregate_id"])
    steps: list[tuple[str, str, dict[str, Any]]] = [
        (mission, "package-contracted", {"contract_id": store.contract, "package_id": "PKG-1"}),
        (mission, "visa-requested", {}),
        ("mofa", "visa-issued", {"valid_until": (T0 + timedelta(days=90)).isoformat()}),
        ("gaca", "arrived-at-port", {"port": "JED-HAJJ", "mode": "air", "flight": "GA901"}),
        ("jawazat", "entry-cleared", {"port": "JED-HAJJ"}),
        ("customs", "customs-cleared", {"port": "JED-HAJJ"}),
        ("wukala", "received-at-port", {"port": "JED-HAJJ"}),
    ]
    for role, step, fields in steps if through else []:
        store.post(role, f"/journeys/{journey}/{step}", fields)
        if step == through:
            break
    return journey


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@dataclass
class Dashboard:
    page: Any
    store: Store
    requested: list[str]

    def sign_in(self, role: str) -> None:
        self.page.goto(f"{self.store.base}/")
        self.page.fill("#key", self.store.keys[role])
        self.page.click("#sign-in button[type=submit]")
        self.ready("glance")

    def open(self, address: str, page: str) -> None:
        self.page.evaluate(
            "address => { delete document.getElementById('page').dataset.ready; location.hash = address }", address
        )
        self.ready(page)

    def ready(self, page: str) -> None:
        self.page.wait_for_selector(f"#page[data-ready='{page}']", timeout=10_000)

    def text(self, selector: str) -> str:
        text: str = self.page.inner_text(selector)
        return text


@pytest.fixture
def dashboard(browser: Any, store: Store) -> Iterator[Dashboard]:
    """A fresh browser session (its own sessionStorage) that records every request it makes, and lets none but those
    to the server under test through: afterwards, no request may have gone anywhere else."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    requested: list[str] = []
    errors: list[str] = []

    def route(intercepted: Any) -> None:
        requested.append(intercepted.request.url)
        if urlsplit(intercepted.request.url).hostname == "127.0.0.1":
            intercepted.continue_()
        else:
            intercepted.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield Dashboard(page, store, requested)
    context.close()
    server = urlsplit(store.base).netloc
    assert requested and {urlsplit(u).netloc for u in requested} == {server}, requested
    assert not errors, errors


def test_arabic_right_to_left_by_default_english_on_the_switch_and_the_key_kept_for_the_session(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    page.goto(f"{dashboard.store.base}/")
    root = "document.documentElement"
    layout = f"[{root}.lang, {root}.dir, getComputedStyle(document.body).direction]"
    assert page.evaluate(layout) == ["ar", "rtl", "rtl"]
    assert dashboard.text("#sign-in h1") == "تسجيل الدخول"
    page.fill("#key", "hl_000000000000_" + "x" * 43)
    page.click("#sign-in button[type=submit]")
    page.wait_for_function("document.getElementById('sign-in-error').textContent !== ''")
    assert dashboard.text("#sign-in-error") == "المفتاح غير معروف أو أُلغي."

    dashboard.sign_in("ministry")
    assert dashboard.text("#nav a[aria-current=page]") == "الموسم في لمحة"
    assert dashboard.text("#agency") == "dashboard ministry · وزارة الحج والعمرة"  # GET /v1/agency
    assert page.evaluate("[sessionStorage.getItem('hajj-ledger.key') !== null, localStorage.length]") == [True, 0]
    assert "بتوقيت مكة" in dashboard.text("#clock") and "هـ" in dashboard.text("#clock")  # Makkah's clock, Hijri too
    page.wait_for_selector("#funnel [data-key=registered]")
    page.click("#language")
    dashboard.ready("glance")
    assert page.evaluate(layout) == ["en", "ltr", "ltr"]
    assert dashboard.text("#nav a[aria-current=page]") == "Season at a glance"
    assert "Makkah time" in dashboard.text("#clock") and " AH" in dashboard.text("#clock")
    assert dashboard.text("#funnel h2") == "Journeys by stage"
    assert dashboard.text("#agency") == "dashboard ministry · Ministry of Hajj"
    assert "registered" in dashboard.text("#funnel")
    same = page.evaluate(
        """async () => {
            const { STRINGS, NAMES } = await import('/dashboard/strings.js');
            const keys = (table) => JSON.stringify(Object.keys(table).sort());
            return keys(STRINGS.ar) === keys(STRINGS.en) && keys(NAMES.ar) === keys(NAMES.en);
        }"""
    )
    assert same, "every string is in both languages"
    page.click("#language")
    dashboard.ready("glance")
    assert page.evaluate(f"{root}.dir") == "rtl"

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('hajj-ledger.key')") is None


def test_each_agency_sees_what_the_api_lets_it_read(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("mission")
    assert page.get_attribute("#agency", "data-agency") == "mission-IDN-1"
    assert page.get_attribute("#agency", "data-role") == "mission"
    assert page.get_attribute("#funnel [data-refused]", "data-refused") == "null"  # the funnel is the ministry's
    dashboard.open(f"#/journey/{store.received}", "journey")
    timeline = page.locator("#timeline li")
    assert timeline.count() == 8 and timeline.first.get_attribute("data-event") == "Registered"
    last = timeline.last
    assert last.get_attribute("data-event") == "ReceivedAtPort"
    assert last.locator("[data-clock=occurred]").get_attribute("datetime").startswith("2025-05-01T08:00:00")
    recorded = last.locator("[data-clock=recorded]").get_attribute("datetime")
    assert recorded > "2025-05-02"  # recorded by the ledger's clock, not the agency's
    assert "wukala" in last.locator("[data-field=agency]").inner_text()
    assert dashboard.text("#identity [data-field=name_latin]") == "SITI NURHAYATI"
    dashboard.open(f"#/journey/{store.other}", "journey")  # another mission's journey
    assert page.is_visible("#not-found") and not page.is_visible("#timeline")

    page.click("#sign-out")
    dashboard.sign_in("other_mission")
    dashboard.open(f"#/journey/{store.received}", "journey")
    assert page.is_visible("#not-found")
    dashboard.open(f"#/journey/{store.other}", "journey")
    assert dashboard.text("#identity [data-field=name_latin]") == "MOHAMED SALAH"

    page.click("#sign-out")
    dashboard.sign_in("naqaba")
    dashboard.open(f"#/journey/{store.received}", "journey")
    assert page.locator("#timeline li").count() == 8
    assert page.get_attribute("#identity [data-refused]", "data-refused") == "403"  # the car syndicate reads none
    dashboard.open("#/work", "work")
    waiting = page.locator("#work-naqaba td[data-column=journey_id]")
    waiting.first.wait_for()
    assert waiting.all_inner_texts() == [store.received]
    for refused in ("#work-moh", "#work-headcount", "#work-jawazat"):
        page.wait_for_selector(f"{refused} [data-refused='403']")
        assert dashboard.text(refused).endswith("غير متاح لجهتك")

    page.click("#sign-out")
    dashboard.sign_in("moh")
    dashboard.open("#/work", "work")
    page.wait_for_selector("#work-naqaba [data-refused='403']")
    page.wait_for_selector("#work-moh .pager")  # health cases: its table (empty on this store), not refused


def test_a_step_recorded_over_the_api_shows_on_an_open_dashboard_within_two_seconds(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("ministry")
    page.wait_for_selector("#live[data-state=live]")
    received = page.locator("#funnel [data-key=received]")
    received.wait_for()
    before = int(received.get_attribute("data-value"))
    now = datetime.now(UTC).replace(microsecond=0)
    position = store.post("wukala", f"/journeys/{store.cleared}/received-at-port", {"port": "JED-HAJJ"}, at=now)
    recorded = time.monotonic()
    page.wait_for_selector(
        f"#ticker li[data-position='{position['position']}'][data-event=ReceivedAtPort]", timeout=2000
    )
    page.wait_for_selector(f"#funnel [data-key=received][data-value='{before + 1}']", timeout=2000)
    assert time.monotonic() - recorded < 2
    assert page.get_attribute("#funnel [data-key=received] [data-today]", "data-today") == "1"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    # One summary, answered once every view it counts has the event; no view read to wait for it.
    after = [urlsplit(u) for u in dashboard.requested if f"min_position={position['position']}" in u]
    assert [u.path for u in after] == ["/v1/summary"], after


def test_every_view_as_a_table_with_filters_and_pages(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("ministry")
    page.click("#language")  # in English
    dashboard.open("#/views", "views")
    assert page.get_attribute("#views tr[data-view=season_funnel]", "data-readable") == "true"
    dashboard.open("#/views/journey_status?limit=1", "views")
    seen = []
    for _ in range(3):
        page.wait_for_selector("#view td[data-column=journey_id]")
        seen += page.locator("#view td[data-column=journey_id]").all_inner_texts()
        next_page = page.locator("#view .pager button", has_text="Next")
        if next_page.is_disabled():
            break
        next_page.click()
        page.wait_for_selector(f"#view td[data-column=journey_id]:not(:text('{seen[-1]}'))")
    assert sorted(seen) == sorted([store.received, store.cleared, store.other])
    page.select_option("#view select[name=in_hospital]", "false")
    page.fill("#view input[name=country]", "EGY")
    page.click("#view .filters button[type=submit]")
    page.wait_for_function("location.hash.includes('country=EGY')")
    dashboard.ready("views")
    page.wait_for_selector("#view td[data-column=journey_id]")
    assert page.locator("#view td[data-column=journey_id]").all_inner_texts() == [store.other]

    page.click("#sign-out")
    dashboard.sign_in("mission")
    dashboard.open("#/views/season_funnel", "views")
    page.wait_for_selector("#view [data-refused='403']")
