// 模板管理 (read-only): every template with its version, when it changed, its fields and the jobs that
// name it (links to their pages). GET /api/v1/templates lists them with their jobs; a template's fields
// are read when its "fields" section is opened. Editing stays with the API and oceanctl.

import { api } from "./api.js";
import { formatTime, h } from "./dom.js";
import { t } from "./i18n.js";

export const JOBS_SHOWN = 100; // per template; the rest is counted

export async function renderTemplates(container) {
  const { templates } = await api("GET", "/api/v1/templates");
  const heading = h("h1", {}, t("templates"));
  if (!templates.length) {
    container.replaceChildren(heading, h("p", { class: "empty", id: "no-templates" }, t("no_templates")));
    return;
  }
  const sections = templates.map((tpl) => {
    const id = `tpl-${tpl.name}`;
    const fields = h("pre", { class: "template-fields" }, t("loading"));
    const details = h(
      "details",
      {
        ontoggle: async () => {
          if (!details.open || details.dataset.loaded) return;
          details.dataset.loaded = "1";
          try {
            const got = await api("GET", `/api/v1/templates/${encodeURIComponent(tpl.name)}`);
            fields.textContent = JSON.stringify(got.template, null, 2);
          } catch (e) {
            fields.textContent = `${t("error")}: ${e.message}`;
          }
        },
      },
      h("summary", {}, t("template_fields")),
      fields,
    );
    const shown = tpl.jobs.slice(0, JOBS_SHOWN);
    const jobs = tpl.jobs.length
      ? h(
          "ul",
          { class: "template-jobs", "aria-label": t("template_jobs") },
          shown.map((name) => h("li", {}, h("a", { href: `#/job/${encodeURIComponent(name)}` }, name))),
          tpl.jobs.length > shown.length ? h("li", { class: "more" }, t("more_jobs", tpl.jobs.length - shown.length)) : null,
        )
      : h("p", { class: "empty" }, t("template_unused"));
    return h(
      "section",
      { class: "template", id, "aria-labelledby": `${id}-name` },
      h("h2", { id: `${id}-name` }, tpl.name),
      h(
        "p",
        { class: "meta" },
        `${t("version")} ${tpl.version} · ${t("updated")} ${formatTime(tpl.updated_at)} · `,
        t("template_job_count", tpl.jobs.length),
      ),
      details,
      jobs,
    );
  });
  container.replaceChildren(heading, ...sections);
}
