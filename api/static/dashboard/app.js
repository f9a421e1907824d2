// The season dashboard: one page, its pages chosen by the address's hash (#/, #/journey/ID, #/work, #/views/NAME).
// Everything it shows comes from the API with the agency's key: what the API refuses (403) is shown as not available
// to the agency, never hidden by a guess made here.
import { bars, capacity, capacityLegend, element, stackedDays } from "./charts.js";
import { NAMES, STRINGS } from "./strings.js";

const KEY = "hajj-ledger.key"; // sessionStorage: gone when the tab is closed
const LANGUAGE = "hajj-ledger.language";
const SEASON = "hajj-ledger.season"; // the season chosen; none: the current one, whichever the ledger says it is
const MAKKAH = "Asia/Riyadh"; // UTC+3 all year
const RECENT = 30; // feed events kept for the glance page's list, the feed's backlog when the page opens
const CODES = new Set(["stage", "stage_before_bus", "place", "trip_destination", "last_event", "port", "site",
  "last_known_place", "origin", "destination", "status", "mode", "gender", "kind", "city", "licence", "inspection"]);

const state = {
  key: sessionStorage.getItem(KEY),
  lang: sessionStorage.getItem(LANGUAGE) || "ar",
  season: sessionStorage.getItem(SEASON), // every page is of one season: this one, else the current one
  seasons: null, // the seasons there are pages of, and the current one (GET /v1/summary), once known
  views: null, // the index of views (GET /v1/views), once signed in
  agency: null, // who the key belongs to (GET /v1/agency), once signed in
  recent: [],
  untold: false, // the feed refused the role: it is told of no event
  listeners: new Set(),
  feed: null, // the AbortController of the open feed
  leave: [], // what the page shown undoes when another is shown
  turn: 0, // the pages shown so far: only the latest may say it is ready
};

const t = (key) => STRINGS[state.lang][key] ?? key;
const named = (code) => (code === null || code === undefined ? "—" : NAMES[state.lang][code] ?? String(code));
const locale = () => (state.lang === "ar" ? "ar-SA" : "en-GB");
const number = (value) => new Intl.NumberFormat(locale()).format(value);
const year = (value) => new Intl.NumberFormat(locale(), { useGrouping: false }).format(value);

function formats() {
  const base = { timeZone: MAKKAH };
  return {
    day: new Intl.DateTimeFormat(`${locale()}-u-ca-gregory`, { ...base, year: "numeric", month: "short", day: "numeric" }),
    short: new Intl.DateTimeFormat(`${locale()}-u-ca-gregory`, { ...base, month: "short", day: "numeric" }),
    time: new Intl.DateTimeFormat(`${locale()}-u-ca-gregory`, { ...base, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }),
    hijri: new Intl.DateTimeFormat(`${locale()}-u-ca-islamic-umalqura`, { ...base, year: "numeric", month: "long", day: "numeric" }),
  };
}

// Between two figures: in Arabic a comma, since "·" beside Arabic-Indic digits reads as a zero (٠).
const separator = () => (state.lang === "ar" ? "، " : " · ");
const noonInMakkah = (day) => new Date(`${day}T12:00:00+03:00`);
const dayText = (day) => { const f = formats(), d = noonInMakkah(day); return `${f.day.format(d)} (${f.hijri.format(d)})`; };
function moment(iso) {
  const f = formats(), d = new Date(iso);
  return `${f.day.format(d)} ${f.time.format(d)} (${f.hijri.format(d)})`;
}

// The API, as the signed-in agency.

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { Authorization: `Bearer ${state.key}`, Accept: "application/json" } });
  } catch {
    return { status: 0, body: null };
  }
  if (response.status === 401) {
    signOut(t("keyRefused"));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { status: response.status, body };
}

// What a read came to: its content, or why there is none (refused: not available to the agency).
function outcome(result, render) {
  if (result.status === 200) return render(result.body);
  if (result.status === 403) return element("p", { class: "unavailable", "data-refused": "403", text: t("notAvailable") });
  const reason = result.body && result.body.detail ? `: ${result.body.detail}` : "";
  return element("p", { class: "error", "data-status": result.status, text: `${t("failed")} (${result.status || t("unreachable")})${reason}` });
}

function card(title, attributes = {}, ...children) {
  return element("section", { class: "card", ...attributes }, element("h2", { text: title }), ...children);
}

// The change feed: GET /v1/feed takes the key in its header, which EventSource cannot send; read with fetch and
// parsed here (text/event-stream), resumed after a break from the last id received.

function follow() {
  const controller = new AbortController();
  state.feed = controller;
  let last = null;
  const live = document.getElementById("live");
  const show = (name) => {
    live.hidden = false;
    live.dataset.state = name;
    live.dataset.t = { live: "live", unavailable: "liveUnavailable", connecting: "connecting" }[name];
    live.textContent = t(live.dataset.t);
  };
  (async () => {
    while (!controller.signal.aborted) {
      show("connecting");
      try {
        const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
        if (last !== null) headers["Last-Event-ID"] = last;
        const address = seasonal(last === null ? `/v1/feed?backlog=${RECENT}` : "/v1/feed"); // the latest, then on
        const response = await fetch(address, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 403 || response.status === 404) { show("unavailable"); state.untold = true; deliver([]); return; }
        if (response.status === 401) { signOut(t("keyRefused")); return; }
        if (response.ok && response.body) {
          show("live");
          await readEvents(response.body, (messages) => {
            if (messages.some((m) => m.event === "revoked")) return signOut(t("keyRefused")); // the stream's last
            last = messages.at(-1).id ?? last;
            deliver(messages);
          });
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      await new Promise((resume) => setTimeout(resume, 1000));
    }
  })();
}

async function readEvents(body, each) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const held = buffer.endsWith("\r") ? "\r" : ""; // a CR whose LF may come in the next chunk
    const text = (held ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
    const blocks = text.split("\n\n");
    buffer = blocks.pop() + held;
    const messages = [];
    for (const block of blocks) {
      const message = { id: null, event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(content);
        else if (field === "id") message.id = content;
        else if (field === "event") message.event = content;
      }
      if (message.data.length) messages.push(message);
    }
    if (messages.length) each(messages); // a chunk at once: the backlog draws the page once, not once an event
  }
}

// The listeners hear the events of a chunk together, in log order.
function deliver(messages) {
  const received = [];
  for (const message of messages) {
    try {
      received.push({ position: Number(message.id), event: message.event, data: JSON.parse(message.data.join("\n")) });
    } catch {
      continue;
    }
  }
  if (!received.length && !state.untold) return;
  state.recent.unshift(...received.slice(-RECENT).reverse());
  state.recent.length = Math.min(state.recent.length, RECENT);
  for (const listener of state.listeners) listener(received);
}

function listen(listener) {
  state.listeners.add(listener);
  state.leave.push(() => state.listeners.delete(listener));
}

// Pages.

// The season at a glance: the summary's figures, each panel shown when the summary gives the role any of its figures.
// The summary gives a figure (not null) exactly when the role may read its view (VIEW_READERS, in the API), scoped as
// the view is: a panel of figures it may not read is left out, never shown as refused, and the page asks for nothing
// more. A role that reads journeys but not the season's funnel (a mission, its own) sees its journeys by stage now.
async function glance(page) {
  const heading = element("p", { class: "muted", id: "season" });
  const grid = element("div", { class: "grid" });
  const ticker = element("ul", { class: "ticker", id: "ticker" });
  page.replaceChildren(heading, grid);
  const slots = {}, panels = {};
  const slot = (name, title, wide) => {
    slots[name] = element("div", { text: t("loading") });
    panels[name] = grid.appendChild(card(title, { id: name, class: wide ? "card wide" : "card" }, slots[name]));
    return panels[name];
  };
  slot("funnel", t("funnel"));
  slot("stages", t("stagesNow"));
  slot("cases", t("cases"));
  slot("market", t("market"));
  slot("arrivals", t("arrivals"), true);
  slot("in-kingdom", t("inKingdom"));
  grid.append(card(t("latestEvents"), { id: "events" }, ticker));
  const some = (items, draw) => (items.length === 0 ? t("nothingYet") : draw(items));
  const show = (name, value, draw) => {
    panels[name].hidden = value === null;
    if (value !== null) slots[name].replaceChildren(draw(value));
  };

  const fill = (summary) => {
    heading.textContent = summary.season ? `${t("season")} ${year(summary.season)}${separator()}${t("today")}: ${dayText(summary.day)}` : t("nothingYet");
    show("funnel", summary.funnel, (funnel) => some(funnel, () =>
      bars(funnel.map((s) => ({ key: s.stage, label: named(s.stage), value: s.reached, extra: s.today })), number, t("todayMovement"))));
    show("stages", summary.funnel === null ? summary.stages : null, (stages) => some(stages, () =>
      bars(stages.map((s) => ({ key: s.stage, label: named(s.stage), value: s.journeys })), number)));
    const cases = summary.cases || {};
    const figures = [
      ["in_hospital", t("inHospital"), cases.in_hospital, true], ["missing", t("missing"), cases.missing, true],
      ["deceased", t("deceased"), cases.deceased, true], ["trips", t("tripsOnRoad"), summary.trips_on_the_road],
      ["overstays", t("overstays"), summary.overstays, true],
    ].filter(([, , value]) => value !== null && value !== undefined);
    show("cases", figures.length ? figures : null, () => element("div", { class: "figures" }, ...figures.map((f) => figure(...f))));
    const parts = marketParts(summary);
    show("market", parts.length ? parts : null, () => element("div", { class: "market" }, ...parts));
    show("in-kingdom", summary.in_kingdom, (places) => some(places, () =>
      bars(places.map((p) => ({ key: p.place ?? "", label: named(p.place), value: p.pilgrims })), number)));
    show("arrivals", summary.arrivals, (arrivals) => some(arrivals, () => {
      const days = [...new Set(arrivals.map((a) => a.day))].sort();
      const ports = new Map();
      for (const a of arrivals) {
        if (!ports.has(a.port)) ports.set(a.port, { key: a.port, label: `${named(a.port)} (${named(a.mode)})`, values: {} });
        ports.get(a.port).values[a.day] = a.arrived;
      }
      const series = [...ports.values()].sort((a, b) => sum(b.values) - sum(a.values));
      const f = formats();
      return stackedDays(days, series, { rtl: state.lang === "ar", number, dayLabel: (d) => f.short.format(noonInMakkah(d)) });
    }));
  };
  const showTicker = () => ticker.replaceChildren(...(state.recent.length ? state.recent.map(eventLine) : [element("li", { class: "muted", text: t("nothingYet") })]));
  showTicker();

  let busy = false, wanted = null;
  const refresh = async (position) => {
    if (busy) { wanted = Math.max(wanted ?? 0, position ?? 0); return; }
    busy = true;
    // The summary answers once every view it counts has the event (it waits a little, else says 503: ask again).
    const result = await api(seasonal(position ? `/v1/summary?min_position=${position}` : "/v1/summary"));
    if (result.status === 200) { fill(result.body); learnSeasons([], result.body); }
    else if (result.status === 503) wanted = Math.max(wanted ?? 0, position);
    else for (const name of Object.keys(slots)) { panels[name].hidden = false; slots[name].replaceChildren(outcome(result, () => null)); }
    busy = false;
    if (wanted !== null) { const next = wanted; wanted = null; refresh(next); }
  };
  const events = grid.lastChild;
  events.hidden = state.untold; // a role told of no event: no list of them
  listen((received) => {
    events.hidden = state.untold;
    if (received.length) { showTicker(); refresh(received.at(-1).position); }
  });
  await refresh(null);
}

function figure(key, label, value, alert) {
  return element("div", { class: alert && value ? "figure alert" : "figure", "data-figure": key },
    element("span", { class: "value", "data-value": value, text: number(value) }),
    element("span", { class: "label", text: label }));
}

// The market's figures that the summary gives the role: a figure of a view the role may not read is null, and is left
// out (the page asks for nothing more); none given, no panel (an empty list).
function marketParts(summary) {
  const parts = { taken: t("taken"), free: t("free"), separator: separator() };
  const part = (key, title, content) => element("section", { "data-market": key }, element("h3", { text: title }), content);
  const counted = (...pairs) => pairs.map(([label, value]) => `${t(label)}: ${number(value)}`).join(separator());
  const { offers, contracts: c, beds: b, road } = summary;
  const charts = [
    offers === null ? null : part("offers", t("offersByKind"), offers.length === 0 ? t("nothingYet")
      : capacity(offers.map((o) => ({ key: o.kind, label: named(o.kind), taken: o.places - o.free, free: o.free,
        note: counted(["offersCount", o.offers], ["placesCount", o.places]) })), number, parts)),
    c === null ? null : part("contracts", t("contractedPlaces"), capacity([{ key: "contracts", label: t("placesRow"),
      taken: c.used, free: c.free, note: counted(["contractsCount", c.contracts], ["usedCount", c.used], ["placesCount", c.places]) }], number, parts)),
    b === null ? null : part("beds", t("housingBeds"), element("div", {},
      capacity([{ key: "beds", label: t("bedsRow"), taken: b.occupied, free: b.free }], number, parts),
      element("div", { class: "figures" }, figure("buildings", t("buildingsCount"), b.buildings),
        figure("beds", t("bedsCount"), b.beds), figure("occupied", t("occupiedCount"), b.occupied)))),
  ].filter(Boolean);
  const onRoad = road === null ? null : part("road", t("road"), element("div", { class: "figures" },
    figure("on_the_road", t("busesOnRoad"), road.on_the_road), figure("on_time", t("onTimeTrips"), road.on_the_road - road.overdue),
    figure("overdue", t("overdueTrips"), road.overdue, true)));
  return [...charts, charts.length ? capacityLegend(parts) : null, onRoad].filter(Boolean);
}

const sum = (values) => Object.values(values).reduce((a, b) => a + b, 0);

function eventLine(received) {
  const d = received.data;
  return element("li", { "data-position": received.position, "data-event": received.event },
    element("time", { datetime: d.recorded_at, text: moment(d.recorded_at) }),
    element("strong", { text: named(received.event) }),
    d.aggregate === "journey" ? element("a", { href: `#/journey/${d.aggregate_id}`, class: "ids", text: d.aggregate_id.slice(0, 8) }) : null,
    element("span", { class: "muted", text: `${named(d.role)} · ${d.agency_id}` }),
    details(d.fields));
}

// An event's fields as a reader reads them: each named in the page's language and its value by its kind (a time or a
// day with its Hijri date, a code by its name, an id shortened, a number as the reader writes it); the empty ones
// and those kept for the ledger's own checks (INTERNAL) left out. None left: nothing drawn.
const INTERNAL = new Set(["identity_digest", "ciphertext_digest", "manifest_digest", "archive_url", "first_position",
  "last_position", "season", "pilgrim_id"]);
const DETAIL_CODES = new Set([...CODES, "direction", "findings", "checkpoint", "hold"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function details(fields) {
  const shown = Object.entries(fields || {}).filter(([name, value]) => !INTERNAL.has(name) && value !== null && value !== ""
    && value !== false && !(Array.isArray(value) && value.length === 0));
  if (!shown.length) return null;
  return element("dl", { class: "details" }, ...shown.flatMap(([name, value]) => [
    element("dt", { text: named(name) }), element("dd", { "data-detail": name }, detail(name, value))]));
}

function detail(name, value) {
  if (Array.isArray(value)) return value.map((v, i) => [i ? separator() : null, detail(name, v)]).flat();
  if (value === true) return t("yes");
  if (typeof value === "number") return element("span", { "data-value": value, text: number(value) });
  const type = typeOf(value);
  if (type === "timestamp") return element("time", { datetime: value, text: moment(value) });
  if (type === "date") return element("time", { datetime: value, text: dayText(value) });
  if (DETAIL_CODES.has(name)) return element("span", { "data-code": value, text: named(value) });
  if (UUID.test(value)) return element("span", { class: "ids", title: value, text: value.slice(0, 8) }); // as the list does
  if (name.endsWith("_id")) return element("span", { class: "ids", text: value }); // an agency's, say
  return element("bdi", { text: String(value) });
}

async function journey(page, id) {
  const input = element("input", { name: "journey", dir: "ltr", placeholder: t("journeyId"), value: id || "" });
  const lookup = element("form", { class: "lookup" }, input, element("button", { type: "submit", text: t("open") }));
  lookup.addEventListener("submit", (event) => { event.preventDefault(); location.hash = `#/journey/${input.value.trim()}`; });
  const body = element("div");
  page.replaceChildren(lookup, body);
  if (!id) return;
  const show = async () => {
    const [status, history, identity] = await Promise.all([
      api(`/v1/journeys/${encodeURIComponent(id)}`), api(`/v1/journeys/${encodeURIComponent(id)}/history`),
      api(`/v1/journeys/${encodeURIComponent(id)}/identity`),
    ]);
    if (status.status === 404 || status.status === 422 || history.status === 404) {
      body.replaceChildren(element("p", { class: "error", id: "not-found", text: t("journeyNotFound") }));
      return;
    }
    const facts = (row, keys) => element("dl", { class: "facts" }, ...keys.filter((k) => k in row).flatMap((k) => [
      element("dt", { text: named(k) }), element("dd", { "data-field": k }, cell(k, row[k], typeOf(row[k])))]));
    const statusCard = card(t("status"), { id: "journey-status" }, outcome(status, (row) => facts(row,
      ["journey_id", "pilgrim_id", "season", "country", "mission_id", "company_id", "stage", "place", "in_hospital", "missing",
        "deceased", "visa_valid_until", "last_event", "last_occurred_at", "last_recorded_at"])));
    const identityCard = card(t("identity"), { id: "identity" }, identity.status === 410
      ? element("p", { class: "unavailable", "data-status": "410", text: t("identityErased") })
      : identity.status === 404 ? element("p", { class: "muted", text: t("noIdentity") })
        : outcome(identity, (person) => facts(person, ["name_arabic", "name_latin", "passport_number", "passport_country", "nationality", "date_of_birth", "gender"])));
    const timeline = card(t("timeline"), { id: "timeline", class: "card wide" }, outcome(history, (h) => element("ol", { class: "timeline" },
      ...h.events.map((e) => element("li", { "data-event": e.event, "data-version": e.version },
        element("div", { class: "event", text: named(e.event) }),
        element("div", { class: "clocks" },
          element("span", { class: "muted", text: t("occurred") }), element("time", { datetime: e.occurred_at, "data-clock": "occurred", text: moment(e.occurred_at) }),
          element("span", { class: "muted", text: t("recorded") }), element("time", { datetime: e.recorded_at, "data-clock": "recorded", text: moment(e.recorded_at) }),
          element("span", { class: "muted", text: t("recordedBy") }), element("span", { "data-field": "agency" }, `${named(e.role)} · `, element("span", { class: "ids", text: e.agency_id }))),
        e.late_correction ? element("div", { class: "late", text: `${t("lateCorrection")}: ${e.late_correction}` }) : null,
        details(e.details))))));
    body.replaceChildren(element("div", { class: "grid" }, statusCard, identityCard, timeline));
  };
  listen((received) => { if (received.some((r) => r.data.aggregate_id === id)) show(); });
  await show();
}

// A view as a table: its filters (from the index of views), its pages (the API's keyset cursors).
function viewTable(name, { filters = {}, editable = false, limit = 50, rowClass = () => null } = {}) {
  const box = element("div", { class: "view", "data-view": name });
  const described = state.views ? state.views.find((v) => v.name === name) : null;
  const chosen = { ...filters };
  const cursors = [null];
  let at = 0;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(limit) });
    for (const [k, v] of Object.entries(chosen)) if (v !== "" && v !== null && v !== undefined) query.set(k, v);
    if (cursors[at]) query.set("cursor", cursors[at]);
    const bySeason = described && described.columns.some((c) => c.name === "season");
    if (bySeason && state.season && !query.has("season")) query.set("season", state.season); // the season chosen
    box.replaceChildren(filterForm(), element("p", { class: "muted", text: t("loading") }));
    const result = await api(`/v1/views/${name}?${query}`);
    box.replaceChildren(filterForm(), outcome(result, (page) => {
      cursors[at + 1] = page.next_cursor;
      const columns = described ? described.columns.map((c) => [c.name, c.type])
        : Object.keys(page.items[0] || {}).map((c) => [c, typeOf(page.items[0][c])]);
      const table = element("table", {},
        element("thead", {}, element("tr", {}, ...columns.map(([c]) => element("th", { scope: "col", "data-column": c, text: named(c) })))),
        element("tbody", {}, ...page.items.map((row) => element("tr", { class: rowClass(row) },
          ...columns.map(([c, type]) => element("td", { class: type === "integer" ? "num" : long(row[c]) ? "long" : null, "data-column": c },
            cell(c, row[c], type)))))));
      const pager = element("div", { class: "pager" },
        button(t("firstPage"), at > 0, () => { at = 0; load(); }),
        button(t("previousPage"), at > 0, () => { at -= 1; load(); }),
        button(t("nextPage"), Boolean(page.next_cursor), () => { at += 1; load(); }),
        element("span", { class: "muted", "data-rows": page.items.length, text: `${number(page.items.length)} ${t("rows")}` }));
      return element("div", {}, element("div", { class: "scroll" }, page.items.length ? table : element("p", { class: "muted", text: t("nothingYet") })), pager);
    }));
  };
  const filterForm = () => {
    if (!editable || !described) return "";
    const form = element("form", { class: "filters" });
    for (const column of described.columns.filter((c) => c.filter)) {
      const input = column.type === "boolean"
        ? element("select", { name: column.name }, ...[["", t("any")], ["true", t("yes")], ["false", t("no")]].map(([v, label]) =>
          element("option", { value: v, selected: String(chosen[column.name] ?? "") === v, text: label })))
        : element("input", { name: column.name, type: column.type === "date" ? "date" : "text", dir: "ltr", value: chosen[column.name] ?? "" });
      form.append(element("label", {}, named(column.name), input));
      if (column.at_least) { // min_<column>: rows with at least that many (free places, beds)
        const bound = `min_${column.name}`;
        form.append(element("label", {}, `${named(column.name)} (${t("atLeast")})`,
          element("input", { name: bound, type: "number", min: 0, dir: "ltr", value: chosen[bound] ?? "" })));
      }
    }
    form.append(element("button", { type: "submit", text: t("apply") }), button(t("clear"), true, () => {
      for (const k of Object.keys(chosen)) delete chosen[k];
      location.hash = `#/views/${name}`;
    }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const given = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v !== "") given.set(k, v);
      location.hash = `#/views/${name}${given.size ? `?${given}` : ""}`;
    });
    return form;
  };
  load();
  return box;
}

function button(text, enabled, action) {
  const node = element("button", { type: "button", disabled: !enabled, text });
  node.addEventListener("click", action);
  return node;
}

function typeOf(value) {
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return "integer";
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) return "timestamp";
  if (typeof value === "string" && /^\d{4}-\d\d-\d\d$/.test(value)) return "date";
  return "text";
}

// A value with no place to wrap between words (a digest, an address): it wraps anywhere, so its table fits its card.
const long = (value) => typeof value === "string" && value.length > 20 && !value.includes(" ");

function cell(column, value, type) {
  if (value === null || value === undefined) return "—";
  if (column === "journey_id") return element("a", { href: `#/journey/${value}`, class: "ids", text: value });
  if (type === "boolean") return value ? t("yes") : t("no");
  if (type === "integer") return element("span", { "data-value": value, text: column === "season" ? year(value) : number(value) });
  if (type === "timestamp") return element("time", { datetime: value, text: moment(value) });
  if (type === "date") return element("time", { datetime: value, text: dayText(value) });
  if (CODES.has(column)) return element("span", { "data-code": value, text: named(value) });
  if (type === "uuid" || column.endsWith("_id")) return element("span", { class: "ids", text: value });
  return String(value);
}

function work(page) {
  const overdue = (row) => (row.visa_valid_until && new Date(row.visa_valid_until) < new Date() ? "overdue" : null);
  page.replaceChildren(element("div", { class: "grid" },
    card(t("worklistNaqaba"), { id: "work-naqaba", class: "card wide" }, viewTable("awaiting_transport")),
    card(t("worklistCompanyMissing"), { id: "work-missing", class: "card wide" }, viewTable("missing_persons")),
    card(t("worklistCompanyHeadcount"), { id: "work-headcount", class: "card wide" }, viewTable("site_headcount")),
    card(t("worklistMoh"), { id: "work-moh", class: "card wide" }, viewTable("health_cases")),
    card(t("worklistJawazat"), { id: "work-jawazat", class: "card wide" }, viewTable("overstay_watch", { filters: { in_kingdom: "true" }, rowClass: overdue }))));
}

async function views(page, name, query) {
  if (name) {
    const limit = Number(query.get("limit")) || 50; // a page's rows: #/views/NAME?limit=N
    query.delete("limit");
    const late = (row) => (row.overdue ? "overdue" : null); // a trip past its expected arrival, as the view says
    page.replaceChildren(card(named(name), { id: "view" }, viewTable(name, { filters: Object.fromEntries(query), editable: true, limit, rowClass: late })));
    return;
  }
  const result = state.views ? { status: 200, body: { items: state.views } } : await api("/v1/views");
  page.replaceChildren(card(t("viewsIndex"), { id: "views" }, outcome(result, (index) => element("table", { class: "index" },
    element("thead", {}, element("tr", {}, ...["viewsIndex", "readers", "readable"].map((k) => element("th", { text: t(k) })))),
    element("tbody", {}, ...index.items.map((v) => element("tr", { "data-view": v.name, "data-readable": String(v.readable) },
      element("td", {}, element("a", { href: `#/views/${v.name}` }, named(v.name)), element("div", { class: "muted", dir: "ltr", text: v.description })),
      element("td", { text: v.readers.map(named).join(state.lang === "ar" ? "، " : ", ") }),
      element("td", { text: v.readable ? t("yes") : t("notAvailable") })))))))); 
}

// The frame: language, clock, sign-in, routing.

// The season shown: every page reads one season, the one chosen here, else the current one (the API's default).
function seasonal(path) {
  if (!state.season) return path;
  return `${path}${path.includes("?") ? "&" : "?"}season=${encodeURIComponent(state.season)}`;
}

// The seasons to choose from: those the ministry opened (GET /v1/seasons, which says which is current) and those the
// summary counts in (a store older than the calendar has only these).
function learnSeasons(calendar, summary) {
  const known = state.seasons || { current: null, all: [] };
  const current = calendar.find((s) => s.current);
  const all = new Set([...known.all, ...calendar.map((s) => s.season), ...(summary ? summary.seasons : [])]);
  state.seasons = {
    current: current ? current.season : known.current ?? (summary && !state.season ? summary.season : null),
    all: [...all].sort((a, b) => b - a),
  };
  showSeasons();
}

function showSeasons() {
  const choice = document.getElementById("season-choice");
  const select = document.getElementById("season-select");
  choice.hidden = !(state.key && state.seasons && state.seasons.all.length);
  if (!state.seasons) return;
  const { current, all } = state.seasons;
  const chosen = state.season && !all.includes(Number(state.season)) ? [Number(state.season)] : [];
  select.replaceChildren(
    element("option", { value: "", selected: !state.season, text: current ? `${t("currentSeason")} (${year(current)})` : t("currentSeason") }),
    ...[...chosen, ...all].map((s) => element("option", { value: String(s), selected: String(s) === state.season, text: year(s) })));
}

function chooseSeason(value) {
  state.season = value || null;
  if (state.season) sessionStorage.setItem(SEASON, state.season);
  else sessionStorage.removeItem(SEASON);
  state.recent = []; // the events told were of the season shown before
  if (state.feed) { state.feed.abort(); follow(); }
  route();
}

function translate() {
  document.documentElement.lang = state.lang;
  document.documentElement.dir = state.lang === "ar" ? "rtl" : "ltr";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  showSeasons();
  tick();
}

function tick() {
  const f = formats(), now = new Date();
  document.getElementById("clock").textContent = `${f.time.format(now)} ${t("makkahTime")}${separator()}${f.day.format(now)} (${f.hijri.format(now)})`;
}

function signOut(reason) {
  if (state.feed) state.feed.abort();
  state.feed = null;
  state.key = null;
  state.views = null;
  state.agency = null;
  state.recent = [];
  state.untold = false;
  state.seasons = null;
  sessionStorage.removeItem(KEY);
  document.getElementById("sign-in-error").textContent = reason || "";
  route();
}

async function signIn(key) {
  state.key = key;
  const index = await api("/v1/views");
  if (index.status === 0) return t("unreachable");
  if (index.status === 401) return t("keyRefused");
  sessionStorage.setItem(KEY, key);
  state.views = index.status === 200 ? index.body.items : null;
  const agency = await api("/v1/agency");
  state.agency = agency.status === 200 ? agency.body : null;
  const calendar = await api("/v1/seasons");
  learnSeasons(calendar.status === 200 ? calendar.body : [], null);
  follow();
  return null;
}

async function route() {
  for (const undo of state.leave.splice(0)) undo();
  const signedIn = Boolean(state.key);
  document.getElementById("sign-in").hidden = signedIn;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("season-choice").hidden = !(signedIn && state.seasons && state.seasons.all.length);
  const who = document.getElementById("agency");
  who.hidden = !(signedIn && state.agency);
  who.textContent = state.agency ? `${state.agency.name} · ${named(state.agency.role)}` : "";
  if (state.agency) { who.dataset.role = state.agency.role; who.dataset.agency = state.agency.agency_id; }
  // Each page is drawn into a box of its own: one left while it was still loading draws on into nothing.
  const host = document.getElementById("page");
  const page = element("div");
  const turn = ++state.turn;
  host.replaceChildren(page);
  delete host.dataset.ready;
  if (!signedIn) {
    document.getElementById("live").hidden = true;
    document.getElementById("key").focus();
    return;
  }
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const which = parts[0] || "glance";
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === which);
    if (link.dataset.page === which) link.setAttribute("aria-current", "page");
  }
  if (which === "journey") await journey(page, parts[1] ? decodeURIComponent(parts[1]) : null);
  else if (which === "work") work(page);
  else if (which === "views") await views(page, parts[1], new URLSearchParams(search || ""));
  else await glance(page);
  if (turn === state.turn) host.dataset.ready = which;
}

async function start() {
  translate();
  setInterval(tick, 20_000);
  document.getElementById("language").addEventListener("click", () => {
    state.lang = state.lang === "ar" ? "en" : "ar";
    sessionStorage.setItem(LANGUAGE, state.lang);
    translate();
    route();
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut(""));
  document.getElementById("season-select").addEventListener("change", (event) => chooseSeason(event.target.value));
  document.getElementById("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const refused = await signIn(document.getElementById("key").value.trim());
    document.getElementById("sign-in-error").textContent = refused || "";
    if (refused) state.key = null;
    else document.getElementById("key").value = "";
    route();
  });
  window.addEventListener("hashchange", route);
  if (state.key) {
    const refused = await signIn(state.key);
    if (refused) { state.key = null; sessionStorage.removeItem(KEY); }
  }
  route();
}

start();
