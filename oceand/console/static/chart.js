// The job page's history chart: one small SVG per rule, the rule's recorded value (left axis) against
// the instances (right axis: ready, and the desired count the daemon asked for), over the rows of
// GET /api/v1/jobs/{job}/history; with a preview, the count the new document would have asked for too.
// Hand-written SVG (no library, nothing fetched); `chartModel` is pure (no DOM) and tested on its own.

const SVG = "http://www.w3.org/2000/svg";
export const WIDTH = 640;
export const HEIGHT = 180;
const PAD = { left: 48, right: 40, top: 10, bottom: 24 };

// A round upper bound for an axis: 0.93 -> 1, 87 -> 100, 130 -> 150, 0 -> 1.
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// The rules that have a value in at least one row, in the order they first appear.
export function ruleNames(rows) {
  const names = [];
  for (const r of rows) for (const k of Object.keys(r.values || {})) if (!names.includes(k)) names.push(k);
  return names;
}

// The counts at most once per pixel column (the column's highest ready and desired count), so a week
// of 10 s periods draws as fast as a minute.
function countColumns(rows, colOf, columns) {
  if (rows.length <= columns) return rows;
  const out = new Map();
  for (const r of rows) {
    const c = colOf(r.t);
    const cur = out.get(c);
    if (!cur) out.set(c, { t: r.t, ready: r.ready, desired: r.desired });
    else {
      cur.ready = Math.max(cur.ready, r.ready);
      cur.desired = Math.max(cur.desired, r.desired);
    }
  }
  return [...out.values()];
}

// A rule's values, at most two points per pixel column: the column's lowest and highest value in the
// order they happened, so neither a peak (a scale-out) nor a trough (a scale-in) is averaged away.
function valueColumns(rows, rule, colOf, columns) {
  const withValue = rows.filter((r) => r.values && r.values[rule] !== undefined);
  if (withValue.length <= columns) return withValue;
  const out = new Map();
  for (const r of withValue) {
    const c = colOf(r.t);
    const cur = out.get(c);
    const v = r.values[rule];
    if (!cur) out.set(c, { lo: r, hi: r });
    else {
      if (v < cur.lo.values[rule]) cur.lo = r;
      if (v > cur.hi.values[rule]) cur.hi = r;
    }
  }
  return [...out.values()].flatMap(({ lo, hi }) => (lo === hi ? [lo] : lo.t <= hi.t ? [lo, hi] : [hi, lo]));
}

const fmt = (v) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));

// Everything a chart draws, in SVG coordinates: per rule {rule, max, points: [[x, y]...]} for the value
// and shared step lines for ready, desired and (with a preview timeline) the preview's desired count.
export function chartModel(rows, preview = null, width = WIDTH, height = HEIGHT) {
  const sorted = [...rows].sort((a, b) => a.t - b.t);
  const times = sorted.map((r) => r.t).concat(preview ? preview.map((p) => p.t) : []);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const span = Math.max(1, t1 - t0);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const columns = Math.max(1, Math.floor(plotW));
  const colOf = (t) => Math.min(columns - 1, Math.floor(((t - t0) / span) * columns));
  const cols = countColumns(sorted, colOf, columns);
  const prevCols = preview ? countColumns([...preview].sort((a, b) => a.t - b.t), colOf, columns) : [];
  const x = (t) => PAD.left + ((t - t0) / span) * plotW;
  const instMax = niceMax(Math.max(1, ...cols.map((c) => Math.max(c.ready, c.desired)), ...prevCols.map((c) => c.desired)));
  const yInst = (n) => PAD.top + plotH - (n / instMax) * plotH;
  const step = (list, key) => {
    const pts = [];
    list.forEach((c, i) => {
      const y = yInst(c[key]);
      if (i > 0) pts.push([x(c.t), pts[pts.length - 1][1]]);
      pts.push([x(c.t), y]);
    });
    return pts;
  };
  const rules = ruleNames(sorted).map((rule) => {
    let max = 0;
    let last = null;
    for (const r of sorted) {
      const v = r.values && r.values[rule];
      if (v === undefined) continue;
      max = Math.max(max, v);
      last = v;
    }
    max = niceMax(max);
    const y = (v) => PAD.top + plotH - (Math.max(0, v) / max) * plotH;
    return { rule, max, last, points: valueColumns(sorted, rule, colOf, columns).map((r) => [x(r.t), y(r.values[rule])]) };
  });
  return {
    t0,
    t1,
    width,
    height,
    plot: { left: PAD.left, right: width - PAD.right, top: PAD.top, bottom: PAD.top + plotH },
    instMax,
    rows: sorted.length,
    rules,
    ready: step(cols, "ready"),
    desired: step(cols, "desired"),
    preview: prevCols.length ? step(prevCols, "desired") : null,
  };
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const path = (pts) => pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");

function clock(epoch, withDate) {
  const d = new Date(epoch * 1000);
  const p = (n) => String(n).padStart(2, "0");
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return withDate ? `${d.getMonth() + 1}-${p(d.getDate())} ${hm}` : hm;
}

// One <svg> for one rule of the model. `labels`: {value, ready, desired, preview, title(rule)}.
export function ruleChart(model, r, labels) {
  const { plot } = model;
  const id = `chart-${r.rule.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const svg = el(
    "svg",
    { viewBox: `0 0 ${model.width} ${model.height}`, class: "chart", id, role: "img", "aria-labelledby": `${id}-title`, "data-rule": r.rule },
    el("title", { id: `${id}-title` }, labels.title(r.rule)),
  );
  // grid and axes: the value on the left, the instances on the right, the time below
  for (const f of [0, 0.5, 1]) {
    const y = plot.bottom - f * (plot.bottom - plot.top);
    svg.append(el("line", { x1: plot.left, x2: plot.right, y1: y, y2: y, class: "grid" }));
    svg.append(el("text", { x: plot.left - 4, y: y + 4, class: "axis value-axis", "text-anchor": "end" }, fmt(r.max * f)));
    svg.append(el("text", { x: plot.right + 4, y: y + 4, class: "axis inst-axis" }, fmt(model.instMax * f)));
  }
  const longer = model.t1 - model.t0 > 86400;
  svg.append(el("text", { x: plot.left, y: model.height - 6, class: "axis" }, clock(model.t0, longer)));
  svg.append(el("text", { x: plot.right, y: model.height - 6, class: "axis", "text-anchor": "end" }, clock(model.t1, longer)));
  svg.append(el("polyline", { points: path(model.ready), class: "ready" }));
  svg.append(el("polyline", { points: path(model.desired), class: "desired" }));
  if (model.preview) svg.append(el("polyline", { points: path(model.preview), class: "preview" }));
  svg.append(el("polyline", { points: path(r.points), class: "value" }));
  if (r.points.length === 1) {
    const [cx, cy] = r.points[0];
    svg.append(el("circle", { cx, cy, r: 2.5, class: "value-dot" }));
  }
  return svg;
}
