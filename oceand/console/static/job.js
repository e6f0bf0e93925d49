// The job page: live status (polled), the 自动伸缩 form and the 定时伸缩 table (saved together with
// PUT; the API's 422 errors are shown next to their fields) with "preview before save", the mode and
// manual scale buttons, the LB bindings, the history chart and the decision timeline.

import { ApiError, api, jobPath } from "./api.js";
import { chartModel, ruleChart } from "./chart.js";
import { formatTime, h, nodes } from "./dom.js";
import {
  AUTOSCALE_FIELDS,
  SCHEDULE_FIELDS,
  autoscaleValues,
  buildDocument,
  duration,
  fieldFor,
  scheduleRows,
  seconds,
  thresholdIndexes,
  typed,
} from "./editor.js";
import { t } from "./i18n.js";
import { treeParts } from "./tree.js";

const POLL_MS = 2000;
const HISTORY_EVERY = 3; // the history is read again every 3rd poll (and after any change made here)
const HISTORY_LIMIT = 20000;
export const RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["1d", 86400], ["7d", 604800]];

export async function renderJob(container, name, onAuth) {
  let stored = await api("GET", jobPath(name));
  const parts = treeParts(name);
  const statusBox = h("div", { id: "status" }, t("loading"));
  const timeline = h("div", { id: "timeline" }, t("loading"));
  const lbBox = h("div", { id: "lb" });
  const header = h("div", { class: "job-head" });
  const editor = h("div", { id: "editor" });
  const operateBox = h("div", { id: "operate" });
  const historyBox = h("div", { id: "history" }, t("loading"));
  const previewBox = h("div", { id: "preview", "aria-live": "polite" });
  let range = 3600;
  let historyRows = [];
  let previewTimeline = null;

  function renderHeader() {
    header.replaceChildren(
      h("p", {}, h("a", { href: "#/", id: "back" }, t("back"))),
      h("h1", { id: "job-title" }, name),
      h(
        "p",
        { class: "crumbs" },
        ["cop", "owt", "pdl"].map((l) =>
          parts[l] !== undefined ? h("span", { class: "crumb" }, `${t(l)}: ${parts[l]}`) : null,
        ),
        h("span", { class: "crumb" }, `${t("mode")}: ${stored.job.mode}`),
        h("span", { class: "crumb", id: "version" }, `${t("version")}: ${stored.version}`),
      ),
    );
  }

  // ---- the forms -----------------------------------------------------------------------------------
  let ruleIndex = thresholdIndexes(stored.job)[0] ?? null;
  let rows = scheduleRows(stored.job);

  function field(key, label, value, opts = {}) {
    const id = `f-${key}`;
    return h(
      "div",
      { class: "field" },
      h("label", { for: id }, label),
      h("input", {
        id,
        name: key,
        value,
        type: "text",
        inputmode: opts.inputmode,
        autocomplete: "off",
        "aria-describedby": `${id}-err${opts.help ? ` ${id}-help` : ""}`,
        size: opts.size || 8,
      }),
      opts.help ? h("span", { class: "help", id: `${id}-help` }, opts.help) : null,
      h("span", { class: "error", id: `${id}-err`, role: "status" }),
    );
  }

  function renderEditor(message) {
    const values = autoscaleValues(stored.job, ruleIndex);
    const indexes = thresholdIndexes(stored.job);
    const chooser =
      indexes.length > 1
        ? h(
            "div",
            { class: "field" },
            h("label", { for: "f-rule" }, t("which_rule")),
            h(
              "select",
              {
                id: "f-rule",
                onchange: (e) => {
                  ruleIndex = Number(e.target.value);
                  renderEditor();
                },
              },
              indexes.map((i) =>
                h("option", { value: String(i), selected: i === ruleIndex }, stored.job.rules[i].name),
              ),
            ),
          )
        : null;
    const num = { inputmode: "decimal" };
    const autoscale = h(
      "fieldset",
      { class: "autoscale" },
      h("legend", {}, h("h2", {}, t("autoscale"))),
      h("p", { class: "help" }, t("autoscale_help"), ruleIndex !== null ? ` (${stored.job.rules[ruleIndex].name})` : ` ${t("new_rule")}`),
      chooser,
      h(
        "div",
        { class: "row" },
        field("metric", t("metric"), values.metric, { size: 20 }),
        field("aggregate", t("aggregate"), values.aggregate, { size: 6 }),
        field("min_instances", t("min_instances"), values.min_instances, num),
        field("max_instances", t("max_instances"), values.max_instances, num),
      ),
      h(
        "div",
        { class: "row side", role: "group", "aria-labelledby": "out-title" },
        h("h3", { id: "out-title" }, t("scale_out")),
        field("out_consecutive", t("consecutive"), values.out_consecutive, num),
        field("out_above", t("above"), values.out_above, num),
        field("out_step", t("step"), values.out_step, num),
      ),
      h(
        "div",
        { class: "row side", role: "group", "aria-labelledby": "in-title" },
        h("h3", { id: "in-title" }, t("scale_in")),
        field("in_consecutive", t("consecutive"), values.in_consecutive, num),
        field("in_below", t("below"), values.in_below, num),
        field("in_step", t("step"), values.in_step, num),
      ),
      h("p", { class: "help" }, t("side_off")),
      h("div", { class: "row" }, field("notify_group", t("notify_group"), values.notify_group, { size: 20 })),
    );

    const body = h("tbody", {});
    function renderRows() {
      body.replaceChildren(
        ...(rows.length
          ? rows.map((row, k) =>
              h(
                "tr",
                { "data-row": String(k) },
                SCHEDULE_FIELDS.map((f) => {
                  const id = `s-${k}-${f}`;
                  return h(
                    "td",
                    {},
                    h("label", { for: id, class: "sr-only" }, `${t(f)} ${k + 1}`),
                    h("input", {
                      id,
                      value: row[f],
                      type: "text",
                      size: f === "start" ? 18 : f === "name" || f === "timezone" ? 12 : 6,
                      autocomplete: "off",
                      placeholder: f === "start" ? "2026-01-01T07:00" : f === "every" ? "1d" : undefined,
                      "aria-describedby": `${id}-err`,
                      oninput: (e) => {
                        row[f] = e.target.value;
                      },
                    }),
                    h("span", { class: "error", id: `${id}-err`, role: "status" }),
                  );
                }),
                h(
                  "td",
                  {},
                  h(
                    "button",
                    {
                      type: "button",
                      class: "delete-row",
                      "aria-label": t("delete_row_label", row.name || k + 1),
                      onclick: () => {
                        rows.splice(k, 1);
                        renderRows();
                      },
                    },
                    t("delete_row"),
                  ),
                ),
              ),
            )
          : [h("tr", {}, h("td", { colspan: String(SCHEDULE_FIELDS.length + 1), class: "empty" }, t("no_schedules")))]),
      );
    }
    renderRows();
    const schedule = h(
      "fieldset",
      { class: "schedule" },
      h("legend", {}, h("h2", {}, t("schedule"))),
      h("p", { class: "help" }, t("schedule_help")),
      h(
        "table",
        { class: "schedules" },
        h("thead", {}, h("tr", {}, SCHEDULE_FIELDS.map((f) => h("th", { scope: "col" }, t(f))), h("th", {}, h("span", { class: "sr-only" }, t("delete_row"))))),
        body,
      ),
      h(
        "button",
        {
          type: "button",
          id: "add-row",
          onclick: () => {
            rows.push(Object.fromEntries([["orig", null], ...SCHEDULE_FIELDS.map((f) => [f, ""])]));
            renderRows();
            document.getElementById(`s-${rows.length - 1}-name`).focus();
          },
        },
        t("add_row"),
      ),
    );

    const formErrors = h("div", { id: "form-errors", role: "alert" });
    const saved = h("p", { id: "save-result", role: "status" }, message || "");
    const form = h(
      "form",
      { id: "job-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); save(form, formErrors, saved); } },
      autoscale,
      schedule,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", id: "save", class: "primary" }, t("save")),
        h("button", { type: "button", id: "preview-button", onclick: () => runPreview(form, formErrors) }, t("preview")),
        saved,
      ),
      h(
        "details",
        { class: "preview-options" },
        h("summary", {}, t("preview_options")),
        h(
          "div",
          { class: "row" },
          h("div", { class: "field" }, h("label", { for: "p-capacity" }, t("capacity")), h("input", { id: "p-capacity", type: "text", inputmode: "decimal", size: 8, placeholder: "100", autocomplete: "off", "aria-describedby": "p-capacity-help" }), h("span", { class: "help", id: "p-capacity-help" }, t("capacity_help"))),
          h("div", { class: "field" }, h("label", { for: "p-startup" }, t("startup")), h("input", { id: "p-startup", type: "text", size: 8, placeholder: "60s", autocomplete: "off" })),
        ),
      ),
      formErrors,
    );
    editor.replaceChildren(form);
  }

  async function save(form, formErrors, saved) {
    const built = edited(form);
    clearErrors(form, formErrors);
    saved.textContent = t("saving");
    const button = form.querySelector("#save");
    button.disabled = true;
    try {
      const before = stored.version;
      stored = await api("PUT", jobPath(name), built.doc);
      ruleIndex = built.paths.metric ? Number(/^rules\[(\d+)\]/.exec(built.paths.metric)[1]) : null;
      rows = scheduleRows(stored.job);
      renderHeader();
      renderEditor(stored.version === before ? t("unchanged", stored.version) : t("saved", stored.version));
      renderLb(null);
      renderOperate();
      previewTimeline = null; // a preview was of an edit that is now saved (or dropped)
      previewBox.replaceChildren();
      renderHistory();
    } catch (e) {
      button.disabled = false;
      saved.textContent = "";
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 401 || e.status === 403) return onAuth(e);
      showErrors(form, formErrors, built, e);
    }
  }

  // The API's 422 details next to the fields their paths name (the others listed under the buttons).
  function showErrors(form, formErrors, built, e) {
    const fieldIds = {};
    for (const [key, p] of Object.entries(built.paths)) fieldIds[`f-${key}`] = p;
    built.rowPaths.forEach((paths, k) => {
      for (const [f, p] of Object.entries(paths)) fieldIds[`s-${k}-${f}`] = p;
    });
    const details = e.details.length ? e.details : [{ path: "", message: e.message }];
    const other = [];
    let first = null;
    for (const d of details) {
      const id = d.path ? fieldFor(d.path, fieldIds) : null;
      const input = id && form.querySelector(`#${CSS.escape(id)}`);
      if (input) {
        const err = document.getElementById(`${id}-err`);
        err.textContent = err.textContent ? `${err.textContent}; ${d.message}` : d.message;
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      } else {
        other.push(d.path ? `${d.path}: ${d.message}` : d.message);
      }
    }
    formErrors.replaceChildren(
      ...nodes(
        h("p", {}, t("errors", details.length)),
        other.length ? h("ul", { "aria-label": t("other_errors") }, other.map((m) => h("li", {}, m))) : null,
      ),
    );
    if (first) first.focus();
  }

  function clearErrors(form, formErrors) {
    for (const el of form.querySelectorAll(".error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    formErrors.replaceChildren();
  }

  function edited(form) {
    const values = Object.fromEntries(AUTOSCALE_FIELDS.map(([k]) => [k, form.elements[k].value]));
    return buildDocument(stored.job, ruleIndex, values, rows);
  }

  // "Preview before save": the edited document replayed on the job's recorded load over the chart's
  // range (POST …/preview); nothing is saved. Its errors are shown as a save's would be.
  async function runPreview(form, formErrors) {
    const built = edited(form);
    clearErrors(form, formErrors);
    const now = Date.now() / 1000;
    previewBox.replaceChildren(h("p", { class: "muted" }, t("previewing")));
    try {
      const body = { job: built.doc, since: now - range, until: now };
      const capacity = typed(form.querySelector("#p-capacity").value, "number");
      const startup = seconds(form.querySelector("#p-startup").value);
      if (capacity !== undefined) body.capacity = capacity;
      if (startup !== undefined) body.startup = startup;
      const r = await api("POST", `${jobPath(name)}/preview`, body);
      previewTimeline = r.timeline;
      renderPreview(r);
      renderHistory();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 401 || e.status === 403) return onAuth(e);
      previewTimeline = null;
      renderHistory();
      if (e.code === "invalid_document") {
        previewBox.replaceChildren();
        showErrors(form, formErrors, built, e);
      } else {
        previewBox.replaceChildren(h("p", { class: "warn", id: "preview-error", role: "alert" }, `${t("preview_failed")}: ${e.message}`));
      }
    }
  }

  function renderPreview(r) {
    const s = r.summary;
    const pct = (v) => `${(v * 100).toFixed(2)}%`;
    const items = [
      ["periods", s.periods],
      ["actions", s.actions],
      ["scale_outs", s.scale_outs],
      ["scale_ins", s.scale_ins],
      ["max_used", s.max_instances_used],
      ["unserved", pct(s.unserved_fraction)],
      ["cost_ratio", Number(s.cost_ratio).toFixed(2)],
    ];
    const diffs = r.differences || [];
    previewBox.replaceChildren(
      ...nodes(
        h("h3", { id: "preview-title" }, t("preview_result", r.rule)),
        h("dl", { class: "status summary", id: "preview-summary" }, items.flatMap(([k, v]) => [h("dt", {}, t(k)), h("dd", { "data-key": k }, v)])),
        h("p", { id: "preview-diff-count" }, diffs.length ? t("differs", diffs.length) : t("differs_none")),
        diffs.length
          ? h(
              "table",
              { class: "differences", id: "preview-differences" },
              h("thead", {}, h("tr", {}, [t("at"), t("happened"), t("recorded"), t("new_document"), t("would_be")].map((x) => h("th", { scope: "col" }, x)))),
              h(
                "tbody",
                {},
                diffs.slice(0, 200).map((d) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, formatTime(d.t)),
                    h("td", {}, t(`dir_${d.happened}`)),
                    h("td", { class: "num" }, d.recorded_desired),
                    h("td", {}, t(`dir_${d.preview}`)),
                    h("td", { class: "num" }, d.preview_desired),
                  ),
                ),
              ),
            )
          : null,
        diffs.length > 200 ? h("p", { class: "muted" }, t("first_n", 200)) : null,
        h("p", { class: "help" }, t("preview_help")),
      ),
    );
  }

  // ---- status, LB, timeline ------------------------------------------------------------------------
  // a decision's reason codes, then its outcome's (ActuationFailed) once: what the policy decided never
  // changes; what became of it is the decision's `outcome`
  function reasonsOf(x) {
    const out = [...(x.reasons || [])];
    const extra = x.outcome && x.outcome.reason;
    if (extra && !out.includes(extra)) out.push(extra);
    return out;
  }

  function renderStatus(s) {
    const rulesTable = h(
      "table",
      { class: "rules" },
      h("thead", {}, h("tr", {}, [t("rule"), t("value"), t("streaks"), t("next_fire")].map((x) => h("th", { scope: "col" }, x)))),
      h(
        "tbody",
        {},
        Object.entries(s.rules || {}).map(([rname, r]) =>
          h(
            "tr",
            {},
            h("td", {}, `${rname} (${r.type})`),
            h("td", { class: "num" }, r.value === undefined || r.value === null ? "-" : Number(r.value).toFixed(2)),
            h("td", { class: "num" }, r.streak_out !== undefined ? `${r.streak_out} / ${r.streak_in}` : "-"),
            h("td", {}, r.next_fire_local || "-"),
          ),
        ),
      ),
    );
    const cooldown = Object.entries(s.cooldown_left || {})
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} ${Math.ceil(v)}s`)
      .join(", ");
    statusBox.replaceChildren(
      ...nodes(h(
        "dl",
        { class: "status" },
        h("dt", {}, t("instances")), h("dd", { id: "st-instances" }, s.app_known ? s.instances : "?"),
        h("dt", {}, t("running")), h("dd", {}, s.running ?? "-"),
        h("dt", {}, t("ready")), h("dd", {}, s.ready ?? "-"),
        h("dt", {}, t("bounds")), h("dd", {}, `${s.bounds.min} .. ${s.bounds.max}`),
        h("dt", {}, t("effective_mode")), h("dd", {}, h("span", { class: `mode mode-${s.effective_mode}` }, s.effective_mode)),
        h("dt", {}, t("cooldown")), h("dd", {}, cooldown || "-"),
      ),
      s.app_known ? null : h("p", { class: "warn" }, t("app_unknown")),
      s.deployment_in_progress ? h("p", { class: "warn" }, t("deploying")) : null,
      s.blocked ? h("p", { class: "warn" }, `${t("blocked")}: ${s.blocked}`) : null,
      s.retry_at ? h("p", { class: "warn" }, `${t("retry_at")} ${formatTime(s.retry_at)}`) : null,
      rulesTable,
      h("p", { class: "muted" }, `${t("updated")} ${formatTime(Date.now() / 1000)}`),
    ));
    renderLb(s.lb);
  }

  let lastLb = null;
  function renderLb(lbStatus) {
    if (lbStatus) lastLb = lbStatus;
    const entries = stored.job.lb || [];
    if (!entries.length) {
      lbBox.replaceChildren(h("p", { class: "empty" }, t("no_lb")));
      return;
    }
    lbBox.replaceChildren(
      h(
        "table",
        { class: "lb" },
        h("thead", {}, h("tr", {}, [t("lb_type"), t("lb_target"), t("port_index"), t("weight"), t("drain"), t("backends")].map((x) => h("th", { scope: "col" }, x)))),
        h(
          "tbody",
          {},
          entries.map((lb, i) => {
            const st = (lastLb || [])[i];
            const backends = st && st.backends.length
              ? h("ul", { class: "backends" }, st.backends.map((b) => h("li", {}, `${b.address} ${b.state} w${b.weight}`)))
              : "-";
            return h(
              "tr",
              {},
              h("td", {}, lb.type),
              h("td", {}, lb.vip || lb.upstream || lb.backend),
              h("td", { class: "num" }, lb.port_index ?? 0),
              h("td", { class: "num" }, lb.weight ?? "-"),
              h("td", { class: "num" }, lb.drain === undefined ? "-" : duration(lb.drain)),
              h("td", {}, backends, st && st.last_error ? h("span", { class: "warn" }, ` ${st.last_error}`) : null),
            );
          }),
        ),
      ),
    );
  }

  // ---- mode and manual scale ----------------------------------------------------------------------
  function renderOperate(message, isError) {
    const mode = stored.job.mode;
    const modeButton = (m, label) =>
      h("button", { type: "button", id: `mode-${m}`, "aria-pressed": String(mode === m), class: mode === m ? "pressed" : undefined, onclick: () => setMode(m) }, label);
    const instances = h("input", { id: "scale-n", type: "text", inputmode: "numeric", size: 6, autocomplete: "off", "aria-describedby": "operate-result" });
    const reason = h("input", { id: "scale-reason", type: "text", maxlength: "500", size: 18, autocomplete: "off" });
    operateBox.replaceChildren(
      h(
        "div",
        { class: "row modes", role: "group", "aria-labelledby": "modes-label" },
        h("span", { id: "modes-label", class: "label" }, t("mode")),
        modeButton("active", t("mode_active")),
        modeButton("dry-run", t("mode_dry_run")),
        modeButton("paused", t("mode_paused")),
      ),
      h(
        "form",
        { id: "scale-form", class: "row", novalidate: true, onsubmit: (e) => { e.preventDefault(); scaleTo(instances.value, reason.value); } },
        h("div", { class: "field" }, h("label", { for: "scale-n" }, t("scale_to")), instances),
        h("div", { class: "field" }, h("label", { for: "scale-reason" }, t("scale_reason")), reason),
        h("button", { type: "submit", id: "scale-submit" }, t("scale")),
      ),
      h("p", { id: "operate-result", role: "status", class: isError ? "error" : undefined }, message || ""),
    );
  }

  async function operate(call, done) {
    try {
      const r = await call();
      stored = await api("GET", jobPath(name)); // a mode change is a new version of the document
      const saved = document.getElementById("save-result");
      if (saved) saved.textContent = ""; // "saved (version n)" would now name an older version
      renderHeader();
      renderOperate(done(r));
      await poll(true);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 401) return onAuth(e);
      const detail = e.status === 403 ? t("token_forbidden") + e.message : e.message;
      renderOperate(detail, true);
    }
  }

  function setMode(mode) {
    return operate(
      () => api("POST", `${jobPath(name)}/mode`, { mode }),
      (r) => t("mode_set", r.mode, r.version) + (r.effective_mode !== r.mode ? ` (${r.effective_mode}: ${r.dry_run_reason})` : ""),
    );
  }

  function scaleTo(raw, reason) {
    const n = raw.trim() === "" ? null : /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw.trim();
    const body = { instances: n };
    if (reason.trim()) body.reason = reason.trim();
    return operate(
      () => api("POST", `${jobPath(name)}/scale`, body),
      (r) => t("scaled", r.decision.current, r.decision.desired, r.decision.status),
    );
  }

  // ---- the history chart ---------------------------------------------------------------------------
  const charts = h("div", { class: "charts", id: "charts" });
  const legend = h(
    "p",
    { class: "legend" },
    h("span", { class: "key value" }, t("legend_value")),
    h("span", { class: "key ready" }, t("ready")),
    h("span", { class: "key desired" }, t("legend_desired")),
    h("span", { class: "key preview", id: "legend-preview", hidden: true }, t("legend_preview")),
  );
  historyBox.replaceChildren(
    h(
      "div",
      { class: "row" },
      h("label", { for: "history-range" }, t("range")),
      h(
        "select",
        {
          id: "history-range",
          onchange: (e) => {
            range = Number(e.target.value);
            previewTimeline = null;
            previewBox.replaceChildren();
            loadHistory().catch((x) => {
              if (x instanceof ApiError && (x.status === 401 || x.status === 403)) return onAuth(x);
              charts.replaceChildren(h("p", { class: "warn", role: "alert" }, `${t("error")}: ${x.message}`));
            });
          },
        },
        RANGES.map(([label, sec]) => h("option", { value: String(sec), selected: sec === range }, label)),
      ),
      legend,
    ),
    charts,
  );

  function renderHistory() {
    legend.querySelector(".preview").hidden = !previewTimeline;
    const model = historyRows.length ? chartModel(historyRows, previewTimeline) : null;
    if (!model || !model.rules.length) {
      charts.replaceChildren(h("p", { class: "empty", id: "history-empty" }, historyRows.length ? t("no_values") : t("no_history")));
      return;
    }
    const title = (rule) => t("chart_title", rule);
    charts.replaceChildren(
      ...nodes(
        model.rules.map((r) =>
          h(
            "figure",
            { class: "chart-box" },
            h("figcaption", {}, h("strong", {}, r.rule), ` — ${t("last_value")} ${r.last === null ? "-" : Number(r.last).toFixed(2)}`, ` · ${t("periods_n", model.rows)}`),
            ruleChart(model, r, { title }),
          ),
        ),
        historyRows.length >= HISTORY_LIMIT ? h("p", { class: "warn" }, t("history_truncated", HISTORY_LIMIT)) : null,
      ),
    );
  }

  async function loadHistory() {
    const since = Math.floor(Date.now() / 1000 - range);
    const r = await api("GET", `${jobPath(name)}/history?since=${since}&limit=${HISTORY_LIMIT}`);
    historyRows = r.rows || [];
    renderHistory();
  }

  function renderTimeline(d) {
    const list = d.decisions || [];
    if (!list.length) {
      timeline.replaceChildren(h("p", { class: "empty" }, t("no_decisions")));
      return;
    }
    timeline.replaceChildren(
      h(
        "ol",
        { class: "timeline" },
        list.map((x) =>
          h(
            "li",
            { class: `decision status-${x.status}`, "data-id": String(x.id) },
            h("time", { datetime: new Date(x.at * 1000).toISOString() }, formatTime(x.at)),
            h("span", { class: "trigger" }, x.trigger),
            h("span", { class: "change" }, `${x.current} → ${x.desired}`),
            h("span", { class: "result" }, x.status),
            h("span", { class: "reasons" }, reasonsOf(x).map((r) => h("code", { class: "reason" }, r))),
            h(
              "ul",
              { class: "details" },
              (x.proposals || []).map((p) =>
                h("li", {}, `${p.rule}: ${p.reason}${p.desired !== null ? ` → ${p.desired}` : ""}${p.inputs && p.inputs.value !== undefined && p.inputs.value !== null ? ` (${t("value")} ${p.inputs.value})` : ""}`),
              ),
              (x.limits || []).map((l) => h("li", {}, `${l.code}: ${l.before} → ${l.after}${l.detail ? ` (${l.detail})` : ""}`)),
              x.result && x.result.error ? h("li", { class: "warn" }, String(x.result.error)) : null,
            ),
          ),
        ),
      ),
    );
  }

  let ticks = 0;
  async function poll(withHistory = false) {
    try {
      const history = withHistory || ticks++ % HISTORY_EVERY === 0 ? loadHistory() : null;
      const [s, d] = await Promise.all([
        api("GET", `${jobPath(name)}/status`),
        api("GET", `${jobPath(name)}/decisions?limit=50`),
      ]);
      renderStatus(s);
      renderTimeline(d);
      await history;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return onAuth(e);
      const warn = h("p", { class: "warn", id: "poll-error" }, `${t("error")}: ${e.message}`);
      const old = document.getElementById("poll-error");
      if (old) old.replaceWith(warn);
      else statusBox.prepend(warn);
    }
  }

  renderHeader();
  renderEditor();
  renderOperate();
  renderLb(null);
  container.replaceChildren(
    h(
      "div",
      { class: "job-view" },
      header,
      h("div", { class: "cols" },
        h("div", { class: "col-main" }, editor, previewBox),
        h(
          "div",
          { class: "col-side" },
          h("section", { "aria-labelledby": "status-title" }, h("h2", { id: "status-title" }, t("status")), statusBox),
          h("section", { "aria-labelledby": "operate-title" }, h("h2", { id: "operate-title" }, t("operate")), operateBox),
          h("section", { "aria-labelledby": "lb-title" }, h("h2", { id: "lb-title" }, t("lb")), lbBox),
        ),
      ),
      h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, t("history")), historyBox),
      h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, t("decisions")), timeline),
    ),
  );
  await poll();
  const timer = setInterval(() => {
    if (!document.hidden) poll(); // a tab in the background asks nothing
  }, POLL_MS);
  return () => clearInterval(timer);
}
