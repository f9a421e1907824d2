// The dashboard's charts, drawn here as HTML bars and inline SVG: nothing to load, and the page's direction
// (rtl or ltr) is followed by the bars through logical CSS, by the SVG by drawing time from the reading start.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#00623b", "#b8860b", "#2f6fb0", "#8c3b8f", "#c2571a", "#3f8f8a", "#6b7d1f", "#a12f4f", "#5a5a9e",
  "#8a6d3b", "#2d8f4e", "#9e5a5a"];

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

// Horizontal bars, one a row: [{key, label, value, extra}] with the figures as the reader's numbers.
export function bars(rows, number, extraLabel) {
  const top = Math.max(1, ...rows.map((r) => r.value));
  const grid = element("div", { class: "bars" });
  for (const row of rows) {
    const fill = element("div", { class: "fill" });
    fill.style.inlineSize = `${(100 * row.value) / top}%`; // CSSOM: allowed by the page's style policy
    const figure = element("span", { class: "num", "data-key": row.key, "data-value": row.value }, number(row.value));
    if (row.extra) {
      figure.append(element("span", { class: "today", title: extraLabel, "data-today": row.extra }, `+${number(row.extra)}`));
    }
    grid.append(element("span", { text: row.label }), element("div", { class: "track" }, fill), figure);
  }
  return grid;
}

// Places taken and free, a row a pool of them (the offers of a kind, the contracts, the beds):
// [{key, label, note, taken, free}], each bar as long as its places against the largest, its free part in gold, the
// note under it; the figure shown is the free places. `parts` names the two in the reader's language, and the separator between them: {taken, free, separator}.
export function capacity(rows, number, parts) {
  const top = Math.max(1, ...rows.map((r) => r.taken + r.free));
  const grid = element("div", { class: "bars capacity" });
  for (const row of rows) {
    const track = element("div", { class: "track", title: `${parts.taken}: ${number(row.taken)}${parts.separator}${parts.free}: ${number(row.free)}` });
    for (const [part, value] of [["taken", row.taken], ["free", row.free]]) {
      const fill = element("div", { class: `fill ${part}` });
      fill.style.inlineSize = `${(100 * value) / top}%`;
      track.append(fill);
    }
    grid.append(element("span", { text: row.label }), track,
      element("span", { class: "num", title: parts.free, "data-key": row.key, "data-value": row.free, "data-taken": row.taken }, number(row.free)),
      ...(row.note ? [element("small", { class: "muted note", text: row.note })] : []));
  }
  return grid;
}

// What the capacity charts' two colours mean, once for them all.
export function capacityLegend(parts) {
  return element("div", { class: "legend" }, ...["taken", "free"].map((part) => element("span", {}, element("i", { class: `fill ${part}` }), parts[part])));
}

// Columns per day, stacked by series (a port): {days: [...], series: [{key, label, values: {day: n}}]}.
export function stackedDays(days, series, { rtl, dayLabel, number }) {
  const width = 900, height = 260, left = 46, bottom = 26, top = 10;
  const totals = days.map((d) => series.reduce((sum, s) => sum + (s.values[d] || 0), 0));
  const peak = Math.max(1, ...totals);
  const step = (width - left - 10) / Math.max(1, days.length);
  const scale = (v) => ((height - top - bottom) * v) / peak;
  // Drawn left to right whatever the page's direction (which would turn text-anchor around): rtl is drawn mirrored.
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", direction: "ltr" });
  const x = (i) => (rtl ? width - left - (i + 1) * step : left + i * step);
  for (const fraction of [0, 0.5, 1]) {
    const y = height - bottom - scale(peak * fraction);
    chart.append(svg("line", { x1: rtl ? 10 : left, x2: rtl ? width - left : width - 10, y1: y, y2: y, stroke: "#d9e0dc" }));
    const tick = svg("text", { x: rtl ? width - 4 : left - 6, y: y + 4, "font-size": 11, fill: "#5f6b65", "text-anchor": "end" });
    tick.textContent = number(Math.round(peak * fraction));
    chart.append(tick);
  }
  days.forEach((day, i) => {
    let base = height - bottom;
    series.forEach((s, k) => {
      const value = s.values[day] || 0;
      if (!value) return;
      const h = scale(value);
      base -= h;
      const bar = svg("rect", { x: x(i) + 1, y: base, width: Math.max(1, step - 2), height: h, fill: PALETTE[k % PALETTE.length] });
      const title = svg("title");
      title.textContent = `${dayLabel(day)} · ${s.label}: ${number(value)}`;
      bar.append(title);
      chart.append(bar);
    });
    const every = Math.ceil(days.length / 8);
    if (i % every === 0) {
      const label = svg("text", { x: x(i) + step / 2, y: height - 8, "font-size": 11, fill: "#5f6b65", "text-anchor": "middle" });
      label.textContent = dayLabel(day);
      chart.append(label);
    }
  });
  const legend = element("div", { class: "legend" });
  series.forEach((s, k) => {
    const swatch = element("i");
    swatch.style.background = PALETTE[k % PALETTE.length];
    legend.append(element("span", { "data-key": s.key }, swatch, s.label));
  });
  return element("div", { class: "chart" }, chart, legend);
}
