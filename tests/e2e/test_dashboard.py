"""The season dashboard in a real browser: Debian's Chromium driven by Playwright, against `hajj-ledger serve` on a
small store recorded over the API by the roles that own each step. Each agency signs in with its key and sees what
the API lets it read (the market's panel only for the roles that read the market); the page is Arabic and right to
left until switched; a step recorded over the API shows on an open page without a reload; and no request of any page
leaves 127.0.0.1."""

from __future__ import annotations

import os
import re
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
from hajj_ledger.domain.access import FEED_READERS, VIEW_READERS
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.conftest import IN_CI
from tests.support import T0, as_json, building_fields, offer_fields, run_cli, season_opened, serving

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `playwright install` is never run
pytestmark = [
    pytest.mark.xdist_group("dashboard"),  # one server and one browser for the module
    pytest.mark.skipif(not IN_CI and not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]
SCOPES = {"mission": "mission-IDN-1", "company": "company-1", "other_mission": "mission-EGY-2"}
# The market's figures in the summary (GET /v1/summary), each with the view it is counted in.
MARKET = {"offers": "service_offers", "contracts": "contracts", "beds": "building_occupancy", "road": "trips_on_road"}
ROLES = ("mission", "company", "mofa", "gaca", "jawazat", "customs", "wukala", "naqaba", "moh", "ministry", "amanah",
         "civil_defence", "road_security", "auditor", "analyst")  # fmt: skip
# Each figure of the summary, with where the glance page draws it: the page draws exactly those the summary gives.
GLANCE = {
    "funnel": "#funnel", "arrivals": "#arrivals", "in_kingdom": "#in-kingdom",
    "cases": "#cases [data-figure=in_hospital]", "trips_on_the_road": "#cases [data-figure=trips]",
    "overstays": "#cases [data-figure=overstays]",
    **{figure: f"#market [data-market={figure}]" for figure in MARKET},
}  # fmt: skip
WIDTHS = (1366, 1920)  # the common laptop's and desktop's screens
ARABIC_DOT = re.compile("[\u0660-\u0669]\\s*·|·\\s*[\u0660-\u0669]")  # "·" by an Arabic-Indic digit reads as a zero


@dataclass
class Store:
    base: str
    keys: dict[str, str]
    received: str  # journey of mission-IDN-1 received at the port: awaiting transport
    cleared: str  # journey of mission-IDN-1 through customs: the next step is recorded by the tests
    other: str  # journey of mission-EGY-2
    head: int = 0  # the position of the last step recorded
    contract: str = ""  # mission-IDN-1's signed contract with company-1, its journeys' package
    url: str = ""  # the store's

    def post(self, role: str, path: str, body: dict[str, Any], at: datetime = T0) -> dict[str, Any]:
        done = httpx.post(
            f"{self.base}/v1{path}", json={"occurred_at": at.isoformat(), **body},
            headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30,
        )  # fmt: skip
        assert done.status_code == 201, (path, done.text)
        answer: dict[str, Any] = done.json()
        self.head = max(self.head, answer["position"])
        return answer

    def get(self, role: str, path: str, **params: Any) -> Any:
        """What the API answers the role, once the views have every step recorded so far."""
        done = httpx.get(
            f"{self.base}/v1{path}", params={"min_position": self.head, **params},
            headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30,
        )  # fmt: skip
        assert done.status_code == 200, (path, done.text)
        return done.json()


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
    season_opened(url)
    with serving({**os.environ, "HAJJ_LEDGER_DATABASE_URL": url}, directory / "serve.log") as [base]:
        seeded = Store(base, keys, "", "", "", url=url)
        seeded.contract = _market(seeded)
        seeded.received = _journey(seeded, "mission", "IDN", "SITI NURHAYATI", through="received-at-port")
        seeded.cleared = _journey(seeded, "mission", "IDN", "AHMAD DAHLAN", through="customs-cleared")
        seeded.other = _journey(seeded, "other_mission", "EGY", "MOHAMED SALAH", through=None)
        _road(seeded)
        for view in ("journey_status", "season_funnel", "awaiting_transport", *MARKET.values()):  # a store at rest
            seeded.get("ministry", f"/views/{view}", limit=1)
        yield seeded


def _market(store: Store) -> str:
    """A building of the company licensed and inspected, its offer, and the mission's contract on it, signed; and an
    offer of places in the camps of Mina, none contracted."""
    company = SCOPES["company"]
    building = store.post("amanah", "/buildings", as_json(building_fields(50, company_id=company)))["aggregate_id"]
    store.post("civil_defence", f"/buildings/{building}/inspection-passed", {"findings": "compliant"})
    offer = store.post("company", "/offers", as_json(offer_fields(50, [building])))["aggregate_id"]
    contract: str = store.post("mission", "/contracts", {"offer_id": offer, "places": 50})["aggregate_id"]
    store.post("company", f"/contracts/{contract}/sign", {})
    store.post("company", "/offers", as_json(CAMPS))
    return contract


CAMPS = offer_fields(30, [], kind="mashaer_camp", site="mina")


def _road(store: Store) -> None:
    """Two buses on the road: one past its expected arrival (two hours after T0), one due in two days."""
    bus = {"operator": "SAPTCO", "origin": "JED-HAJJ", "destination": "makkah", "capacity": 49}
    for plate, due in (("KSA-1", T0 + timedelta(hours=2)), ("KSA-2", datetime.now(UTC) + timedelta(days=2))):
        fields = {**bus, "bus_plate": plate, "departs_at": T0, "expected_arrival": due}
        trip = store.post("naqaba", "/trips", as_json(fields))["aggregate_id"]
        store.post("naqaba", f"/trips/{trip}/trip-departed", {})


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
    page.wait_for_function("() => document.getElementById('sign-in-error').textContent !== ''")
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
    assert page.locator("#funnel").is_hidden()  # the season's funnel is the ministry's; its own journeys by stage:
    for stage in store.get("mission", "/summary")["stages"]:
        shown = page.locator(f"#stages [data-key={stage['stage']}]")
        assert shown.get_attribute("data-value") == str(stage["journeys"])
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
    page.wait_for_function("() => location.hash.includes('country=EGY')")
    dashboard.ready("views")
    page.wait_for_selector("#view td[data-column=journey_id]")
    assert page.locator("#view td[data-column=journey_id]").all_inner_texts() == [store.other]

    page.click("#sign-out")
    dashboard.sign_in("mission")
    dashboard.open("#/views/season_funnel", "views")
    page.wait_for_selector("#view [data-refused='403']")


def _drawn(page: Any, selector: str) -> dict[str, int]:
    """The figures a capacity chart shows, by key: the free places (its numbers), then the taken ones."""
    found: dict[str, int] = {}
    for figure in page.locator(f"{selector} .num").all():
        key = figure.get_attribute("data-key")
        found[key] = int(figure.get_attribute("data-value"))
        found[f"{key} taken"] = int(figure.get_attribute("data-taken"))
    return found


def _market_shown(dashboard: Dashboard, role: str) -> dict[str, Any]:
    """Signed in as the role, the market's panel on the glance page against the summary the API gives that role: each
    part drawn exactly when the summary gives its figure (its view readable by the role), with the summary's
    numbers. Returns the summary."""
    page, store = dashboard.page, dashboard.store
    dashboard.sign_in(role)
    summary: dict[str, Any] = store.get(role, "/summary")
    for figure, view in MARKET.items():
        assert (summary[figure] is None) == (Role(role) not in VIEW_READERS[view]), (role, figure)
    if all(summary[figure] is None for figure in MARKET):
        return summary
    page.wait_for_selector("#market:not([hidden]) [data-market]")
    drawn = page.eval_on_selector_all("#market [data-market]", "parts => parts.map(p => p.dataset.market)")
    assert drawn == [figure for figure in MARKET if summary[figure] is not None], role
    if summary["offers"] is not None:
        assert _drawn(page, "#market [data-market=offers]") == {
            **{o["kind"]: o["free"] for o in summary["offers"]},
            **{f"{o['kind']} taken": o["places"] - o["free"] for o in summary["offers"]},
        }
    if summary["contracts"] is not None:
        contracts = summary["contracts"]
        assert _drawn(page, "#market [data-market=contracts]") == {
            "contracts": contracts["free"],
            "contracts taken": contracts["used"],
        }
    if summary["beds"] is not None:
        beds = summary["beds"]
        assert _drawn(page, "#market [data-market=beds]") == {"beds": beds["free"], "beds taken": beds["occupied"]}
    if summary["road"] is not None:
        for figure in ("on_the_road", "overdue"):
            shown = page.get_attribute(f"#market [data-market=road] [data-figure={figure}] .value", "data-value")
            assert int(shown) == summary["road"][figure]
    return summary


def test_the_market_s_panel_shows_the_summary_s_figures_to_the_roles_that_read_them(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    ministry = _market_shown(dashboard, "ministry")
    # The summary's figures are the views' own: the market's offers of the season by kind, the buses on the road.
    offers = store.get("ministry", "/views/service_offers", season=ministry["season"], status="published")["items"]
    by_kind: dict[str, int] = {}
    for offer in offers:
        by_kind[offer["kind"]] = by_kind.get(offer["kind"], 0) + offer["free"]
    assert {o["kind"]: o["free"] for o in ministry["offers"]} == by_kind and set(by_kind) == {
        "makkah_housing",
        CAMPS["kind"],
    }
    road = store.get("ministry", "/views/trips_on_road", status="on_road")["items"]
    overdue = [trip for trip in road if trip["overdue"]]
    assert ministry["road"] == {"on_the_road": len(road), "overdue": len(overdue)} and 0 < len(overdue) < len(road)
    contracts = store.get("ministry", "/views/contracts", status="signed")["items"]
    assert ministry["contracts"]["used"] == sum(c["used"] for c in contracts) > 0
    # In Arabic, then in English: the panel's words, the kinds named.
    assert dashboard.text("#market h2") == "السوق: الأماكن والأسرّة والحافلات"
    assert "مخيمات المشاعر" in dashboard.text("#market [data-market=offers]")
    page.click("#language")
    dashboard.ready("glance")
    page.wait_for_selector("#market [data-market=road]")
    assert dashboard.text("#market h2") == "The market: places, beds and buses"
    assert "Mashaer camps" in dashboard.text("#market [data-market=offers]")
    assert "Overdue" in dashboard.text("#market [data-market=road]")
    page.click("#language")
    dashboard.ready("glance")

    for role in ("mission", "company", "naqaba"):  # each its own part of the market, scoped as its views are
        page.click("#sign-out")
        summary = _market_shown(dashboard, role)
        assert any(summary[figure] is not None for figure in MARKET)
    page.click("#sign-out")
    moh = _market_shown(dashboard, "moh")  # reads none of the market's views: no panel, nothing asked for around it
    assert all(moh[figure] is None for figure in MARKET)
    page.wait_for_selector("#cases [data-figure=in_hospital]")
    assert page.locator("#market").is_hidden() and page.locator("#market [data-market]").count() == 0
    assert not [u for u in dashboard.requested if any(f"/v1/views/{view}" in u for view in MARKET.values())]


def test_an_offer_published_over_the_api_shows_in_the_market_s_panel_without_a_reload(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("mission")  # told of every company's offers, as the feed tells a mission
    page.wait_for_selector("#live[data-state=live]")
    camps = page.locator(f"#market [data-market=offers] .num[data-key={CAMPS['kind']}]")
    camps.wait_for()
    before = int(camps.get_attribute("data-value"))
    store.post("company", "/offers", as_json({**CAMPS, "places": 7}))
    recorded = time.monotonic()
    more = f"#market [data-market=offers] .num[data-key={CAMPS['kind']}][data-value='{before + 7}']"
    page.wait_for_selector(more, timeout=2000)
    assert time.monotonic() - recorded < 2
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


def test_the_market_s_views_as_tables_with_their_filters(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("ministry")
    page.click("#language")  # in English
    dashboard.open("#/views", "views")
    for view in MARKET.values():
        assert page.get_attribute(f"#views tr[data-view={view}]", "data-readable") == "true"

    dashboard.open("#/views/service_offers", "views")
    page.wait_for_selector("#view td[data-column=offer_id]")
    every = store.get("ministry", "/views/service_offers")["items"]
    assert page.locator("#view td[data-column=offer_id]").count() == len(every)
    page.fill("#view input[name=min_free]", "1")  # at least one free place: the offers not contracted whole
    page.click("#view .filters button[type=submit]")
    page.wait_for_function("() => location.hash.includes('min_free=1')")
    dashboard.ready("views")
    page.wait_for_selector("#view td[data-column=offer_id]")
    free = store.get("ministry", "/views/service_offers", min_free=1)["items"]
    assert 0 < len(free) < len(every) and all(o["free"] >= 1 for o in free)
    assert page.locator("#view td[data-column=offer_id]").all_inner_texts() == [o["offer_id"] for o in free]

    dashboard.open("#/views/trips_on_road", "views")
    page.wait_for_selector("#view td[data-column=trip_id]")
    assert page.locator("#view th[data-column=overdue]").inner_text() == "overdue"
    page.select_option("#view select[name=overdue]", "true")
    page.click("#view .filters button[type=submit]")
    page.wait_for_function("() => location.hash.includes('overdue=true')")
    dashboard.ready("views")
    page.wait_for_selector("#view td[data-column=trip_id]")
    late = store.get("ministry", "/views/trips_on_road", overdue="true")["items"]
    assert len(late) == 1 and page.locator("#view td[data-column=trip_id]").all_inner_texts() == [late[0]["trip_id"]]
    assert page.get_attribute("#view tbody tr", "class") == "overdue"  # in red

    for view in ("contracts", "building_occupancy"):
        dashboard.open(f"#/views/{view}", "views")
        page.wait_for_selector("#view td")
        assert page.locator("#view input[name=min_free]").count() == 1


def test_a_revoked_key_s_open_dashboard_returns_to_the_sign_in(dashboard: Dashboard) -> None:
    """`hajj-ledger agency revoke` ends the key's open feed (with a `revoked` event): the dashboard returns to its
    sign-in form, saying why, without a reload (it stayed signed in, following the feed)."""
    store, page = dashboard.store, dashboard.page
    engine = engine_for(store.url)
    with engine.begin() as connection:
        desk, store.keys["desk"] = agencies.add(connection, Role.MINISTRY, "dashboard desk")
    engine.dispose()
    dashboard.sign_in("desk")
    page.wait_for_selector("#live[data-state=live]")
    assert run_cli("agency", "revoke", desk.agency_id, env={"HAJJ_LEDGER_DATABASE_URL": store.url}).returncode == 0
    page.wait_for_selector("#sign-in:not([hidden])", timeout=20_000)
    assert dashboard.text("#sign-in-error") == "المفتاح غير معروف أو أُلغي."
    assert page.evaluate(
        "[performance.getEntriesByType('navigation').length, sessionStorage.getItem('hajj-ledger.key')]"
    ) == [1, None]


def _told(store: Store, role: str) -> list[int]:
    """The positions of every event the feed tells the role of, read from the log's start until it goes quiet."""
    told = []
    headers = {"Authorization": f"Bearer {store.keys[role]}"}
    try:
        with httpx.stream("GET", f"{store.base}/v1/feed", params={"after": 0}, headers=headers, timeout=1) as stream:
            for line in stream.iter_lines():
                if line.startswith("id:"):
                    told.append(int(line[3:]))
    except httpx.ReadTimeout:
        pass
    return told


def _tables_wider_than_their_cards(page: Any) -> list[Any]:
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('#page table')].filter(t => t.offsetParent).map(t => {
                const card = t.closest('.card');
                return [card.id, t.getBoundingClientRect().width, card.clientWidth];
            }).filter(([, table, card]) => table > card)"""
        )
    )


def test_every_role_s_glance_shows_what_it_may_read_and_its_latest_events(dashboard: Dashboard) -> None:
    """Each role: the figures the summary gives it (those of the views VIEW_READERS lets it read, scoped), each drawn,
    at least three, none refused; the latest events it is told of listed on load, from the feed's backlog; and no
    table of its worklists wider than its card, at either width."""
    store, page = dashboard.store, dashboard.page
    for role in ROLES:
        summary = store.get(role, "/summary")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            dashboard.sign_in(role)
            page.wait_for_selector("#page .card:not([hidden]) [data-value]")
            for figure, selector in GLANCE.items():
                assert page.locator(selector).is_visible() == (summary[figure] is not None), (role, figure)
            if summary["funnel"] is None:  # the journeys by stage now stand in for the season's funnel
                assert page.locator("#stages").is_visible() == (summary["stages"] is not None), role
            figures = page.locator("#page .card:not([hidden]) [data-value]")
            assert figures.count() >= 3, role
            assert page.locator("#page [data-refused]").count() == 0, role
            if Role(role) in FEED_READERS:  # on load, no event recorded since: the latest it is told of, newest first
                latest = _told(store, role)[-30:][::-1]
                listed = f"#ticker li[data-position]:nth-child({len(latest)})" if latest else "#ticker li.muted"
                page.wait_for_selector(listed, timeout=5000)
                shown = page.eval_on_selector_all("#ticker li[data-position]", "li => li.map(l => +l.dataset.position)")
                assert shown == latest, role
            else:
                assert page.locator("#events").is_hidden(), role
            dashboard.open("#/work", "work")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.view')].every(v => v.querySelector('.pager, [data-refused]'))"
            )
            assert _tables_wider_than_their_cards(page) == [], (role, width)
            page.click("#sign-out")


def test_no_view_s_table_is_wider_than_its_card(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.sign_in("ministry")
    for language in ("ar", "en"):
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for view in VIEW_READERS:
                dashboard.open(f"#/views/{view}", "views")
                page.wait_for_selector("#view .pager")
                assert _tables_wider_than_their_cards(page) == [], (language, width, view)
        page.click("#language")
        dashboard.ready("views")


def test_an_event_s_details_are_readable_in_both_languages(dashboard: Dashboard) -> None:
    store, page = dashboard.store, dashboard.page
    dashboard.sign_in("mission")
    dashboard.open(f"#/journey/{store.received}", "journey")
    visa = page.locator("#timeline li[data-event=VisaIssued] [data-detail=valid_until] time")
    assert visa.get_attribute("datetime").startswith((T0 + timedelta(days=90)).date().isoformat())
    arabic = page.locator("#timeline li[data-event=VisaIssued] .details").inner_text()
    assert "يسري حتى" in arabic and "هـ" in arabic and "T00:00" not in arabic and "valid_until" not in arabic
    contracted = page.locator("#timeline li[data-event=PackageContracted] .details").inner_text()
    assert "الباقة" in contracted and "PKG-1" in contracted and "=" not in contracted
    company = page.locator("#timeline li[data-event=PackageContracted] [data-detail=company_id]").inner_text()
    contract = page.locator("#timeline li[data-event=PackageContracted] [data-detail=contract_id] .ids")
    assert company == "company-1" and contract.inner_text() == store.contract[:8]  # an agency's id whole, a uuid short
    registered = page.locator("#timeline li[data-event=Registered]")
    assert registered.locator("[data-detail=identity_digest]").count() == 0  # internal: left out
    arrived = page.locator("#timeline li[data-event=ArrivedAtPort] [data-detail=port]").inner_text()
    assert arrived == "صالة الحجاج بجدة"
    assert not ARABIC_DOT.search(page.inner_text("body"))
    dashboard.open("#/", "glance")
    page.locator("#ticker li[data-position] .details").first.wait_for()
    assert not ARABIC_DOT.search(page.inner_text("body"))

    page.click("#language")  # in English
    dashboard.open(f"#/journey/{store.received}", "journey")
    english = page.locator("#timeline li[data-event=VisaIssued] .details").inner_text()
    assert "valid until" in english and " AH" in english and "+00:00" not in english
    assert page.locator("#timeline li[data-event=ArrivedAtPort] [data-detail=mode]").inner_text() == "air"
