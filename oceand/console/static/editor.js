// The job page's forms <-> the job document (docs/policy.md). Pure functions: no DOM, no fetch.
//
// 自动伸缩 edits one threshold rule (metric, aggregate, scale_out/scale_in: consecutive, above/below,
// step), the job's bounds and its notify group. 定时伸缩 edits the schedule rules, one row each.
// Everything the forms do not show (bands, selector, a schedule's duration ...) is kept as it was.
// Values go to the API as typed, numbers as numbers: the API's 422 says what is wrong, and each
// error's path (`rules[0].scale_out.consecutive`) finds the field it belongs next to.

export const AUTOSCALE_FIELDS = [
  // [form key, path inside the threshold rule (or null: a path of the document), kind]
  ["metric", "metric", "text"],
  ["aggregate", "aggregate", "text"],
  ["min_instances", null, "number"],
  ["max_instances", null, "number"],
  ["out_consecutive", "scale_out.consecutive", "number"],
  ["out_above", "scale_out.above", "number"],
  ["out_step", "scale_out.step", "step"],
  ["in_consecutive", "scale_in.consecutive", "number"],
  ["in_below", "scale_in.below", "number"],
  ["in_step", "scale_in.step", "step"],
  ["notify_group", null, "text"],
];

export const SCHEDULE_FIELDS = ["name", "start", "every", "cron", "timezone", "instances"];

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

// A typed value as the API should see it: "" -> undefined (left out), "12" -> 12, "abc" -> "abc".
export function typed(raw, kind) {
  const s = String(raw ?? "").trim();
  if (s === "") return undefined;
  if (kind === "text") return s;
  return NUMBER.test(s) ? Number(s) : s;
}

// A duration as typed ("90", "90s", "2m", "1h", "1d") in seconds; "" -> undefined; anything else is
// sent as typed, for the API to name.
export function seconds(raw) {
  const s = String(raw ?? "").trim();
  if (s === "") return undefined;
  const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(s);
  if (!m) return s;
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

const show = (v) => (v === undefined || v === null ? "" : String(v));

export function thresholdIndexes(doc) {
  return (doc.rules || []).flatMap((r, i) => (r.type === "threshold" ? [i] : []));
}

export function autoscaleValues(doc, index) {
  const rule = index === null || index === undefined ? {} : doc.rules[index];
  const out = rule.scale_out || {};
  const inn = rule.scale_in || {};
  return {
    metric: show(rule.metric),
    aggregate: show(rule.aggregate || "avg"),
    min_instances: show(doc.min_instances),
    max_instances: show(doc.max_instances),
    out_consecutive: show(out.consecutive),
    out_above: show(out.above),
    out_step: show(out.step),
    in_consecutive: show(inn.consecutive),
    in_below: show(inn.below),
    in_step: show(inn.step),
    notify_group: show((doc.notify || {}).group),
  };
}

// A duration the API returns in seconds, as an operator writes it: 86400 -> "1d", 90 -> "90s".
export function duration(seconds) {
  if (typeof seconds !== "number") return show(seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

export function scheduleRows(doc) {
  return (doc.rules || []).flatMap((r, i) =>
    r.type === "schedule"
      ? [
          {
            orig: i,
            ...Object.fromEntries(SCHEDULE_FIELDS.map((f) => [f, f === "every" ? duration(r[f]) : show(r[f])])),
          },
        ]
      : [],
  );
}

function setOrDelete(obj, key, value) {
  if (value === undefined) delete obj[key];
  else obj[key] = value;
}

function uniqueName(rules, base) {
  const names = new Set(rules.map((r) => r.name));
  let name = base;
  for (let n = 2; names.has(name); n++) name = `${base}${n}`;
  return name;
}

// The edited document, and for each form field the path the API's errors use for it:
// {doc, paths: {form key: path}, rowPaths: [{field: path}] (one per schedule row)}.
export function buildDocument(original, index, values, rows) {
  const doc = structuredClone(original);
  const kept = [];
  const rowPaths = rows.map(() => ({}));
  const rowsByOrig = new Map(rows.map((row, k) => [row.orig, k]));
  let ruleIndex = null;
  let threshold = null;
  (original.rules || []).forEach((rule, i) => {
    if (rule.type === "schedule") {
      if (rowsByOrig.has(i)) kept.push({ rule: structuredClone(rule), row: rowsByOrig.get(i) });
    } else {
      const copy = structuredClone(rule);
      if (i === index) threshold = copy;
      kept.push({ rule: copy, row: null });
    }
  });
  rows.forEach((row, k) => {
    if (row.orig === undefined || row.orig === null) {
      kept.push({ rule: { name: "", type: "schedule" }, row: k });
    }
  });

  const metric = typed(values.metric, "text");
  if (threshold === null && metric !== undefined) {
    threshold = { name: uniqueName(original.rules || [], "autoscale"), type: "threshold" };
    kept.push({ rule: threshold, row: null });
  }
  doc.rules = kept.map((k) => k.rule);
  kept.forEach((k, i) => {
    if (k.rule === threshold) ruleIndex = i;
    if (k.row !== null) {
      for (const f of SCHEDULE_FIELDS) rowPaths[k.row][f] = `rules[${i}].${f}`;
      const row = rows[k.row];
      for (const f of SCHEDULE_FIELDS) {
        setOrDelete(k.rule, f, typed(row[f], f === "instances" ? "number" : "text"));
      }
    }
  });

  const paths = {
    min_instances: "min_instances",
    max_instances: "max_instances",
    notify_group: "notify.group",
  };
  setOrDelete(doc, "min_instances", typed(values.min_instances, "number"));
  setOrDelete(doc, "max_instances", typed(values.max_instances, "number"));
  doc.notify = { ...(doc.notify || {}) };
  setOrDelete(doc.notify, "group", typed(values.notify_group, "text"));

  if (threshold !== null) {
    const base = `rules[${ruleIndex}]`;
    for (const [key, sub, kind] of AUTOSCALE_FIELDS) {
      if (sub !== null) paths[key] = `${base}.${sub}`;
      if (sub === null || sub.includes(".")) continue;
      setOrDelete(threshold, sub, typed(values[key], kind));
    }
    threshold.scale_out = side(threshold.scale_out, "above", values.out_above, values.out_consecutive, values.out_step);
    threshold.scale_in = side(threshold.scale_in, "below", values.in_below, values.in_consecutive, values.in_step);
    if (threshold.scale_out === undefined) delete threshold.scale_out;
    if (threshold.scale_in === undefined) delete threshold.scale_in;
  }
  return { doc, paths, rowPaths };
}

// One side of a threshold rule; an empty threshold turns the side off (docs/policy.md: either side
// may be left out).
function side(existing, key, limit, consecutive, step) {
  const value = typed(limit, "number");
  if (value === undefined) return undefined;
  const out = { ...(existing || {}) };
  out[key] = value;
  setOrDelete(out, "consecutive", typed(consecutive, "number"));
  setOrDelete(out, "step", typed(step, "step"));
  return out;
}

// Which field an API error belongs to: the field with its exact path; else the first field inside
// the error's path (`rules[3]` -> that row's first cell); else the field the error is inside of
// (`rules[0].scale_out.bands[0].step` -> nothing shown for bands: the form's own list). null: none.
export function fieldFor(errorPath, fieldPaths) {
  const entries = Object.entries(fieldPaths);
  const exact = entries.find(([, p]) => p === errorPath);
  if (exact) return exact[0];
  const inside = entries.find(([, p]) => p.startsWith(errorPath + ".") || p.startsWith(errorPath + "["));
  if (inside) return inside[0];
  return null;
}
