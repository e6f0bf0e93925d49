// The job page: live status (polled), the 自动伸缩 form and the 定时伸缩 table (saved together with
// PUT; the API's 422 errors are shown next to their fields), the LB bindings and the decision timeline.

import { ApiError, api, jobPath } from "./api.js";
import { formatTime, h, nodes } from "./dom.js";
import {
  AUTOSCALE_FIELDS,
  SCHEDULE_FIELDS,
  autoscaleValues,
  buildDocument,
  duration,
  fieldFor,
  scheduleRows,
  thresholdIndexes,
} from "./editor.js";
import { t } from "./i18n.js";
import { treeParts } from "./tree.js";

const POLL_MS = 2000;

export async function renderJob(container, name, onAuth) {
  let stored = await api("GET", jobPath(name));
  const parts = treeParts(name);
  const statusBox = h("div", { id: "status" }, t("loading"));
  const timeline = h("div", { id: "timeline" }, t("loading"));
  const lbBox = h("div", { id: "lb" });
  const header = h("div", { class: "job-head" });
  const editor = h("div", { id: "editor" });

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
      h("div", { class: "actions" }, h("button", { type: "submit", id: "save", class: "primary" }, t("save")), saved),
      formErrors,
    );
    editor.replaceChildren(form);
  }

  async function save(form, formErrors, saved) {
    const values = Object.fromEntries(AUTOSCALE_FIELDS.map(([k]) => [k, form.elements[k].value]));
    const built = buildDocument(stored.job, ruleIndex, values, rows);
    for (const el of form.querySelectorAll(".error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    formErrors.replaceChildren();
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
    } catch (e) {
      button.disabled = false;
      saved.textContent = "";
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 401 || e.status === 403) return onAuth(e);
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
        const input = id && document.getElementById(id);
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

  async function poll() {
    try {
      const [s, d] = await Promise.all([
        api("GET", `${jobPath(name)}/status`),
        api("GET", `${jobPath(name)}/decisions?limit=50`),
      ]);
      renderStatus(s);
      renderTimeline(d);
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
  renderLb(null);
  container.replaceChildren(
    h(
      "div",
      { class: "job-view" },
      header,
      h("div", { class: "cols" },
        h("div", { class: "col-main" }, editor),
        h(
          "div",
          { class: "col-side" },
          h("section", { "aria-labelledby": "status-title" }, h("h2", { id: "status-title" }, t("status")), statusBox),
          h("section", { "aria-labelledby": "lb-title" }, h("h2", { id: "lb-title" }, t("lb")), lbBox),
        ),
      ),
      h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, t("decisions")), timeline),
      h("p", { class: "muted" }, t("history_missing")),
    ),
  );
  await poll();
  const timer = setInterval(() => {
    if (!document.hidden) poll(); // a tab in the background asks nothing
  }, POLL_MS);
  return () => clearInterval(timer);
}
