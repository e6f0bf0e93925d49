// 任务管理: the service tree (company -> owt -> product line) and a paged, searchable job list.
// Everything is computed in the browser from GET /api/v1/jobs; only one page of rows is in the DOM,
// so 10,000 jobs stay usable (the tree has a node per company/owt/product line, not per job).

import { h } from "./dom.js";
import { t } from "./i18n.js";
import { LEVELS, buildTree, jobMatches } from "./tree.js";

export const PAGE_SIZE = 50;

// state: {cop, owt, pdl (each optional: the selected tree node), q (search), page (1-based)}
export function renderJobs(container, jobs, state, onState) {
  const path = Object.fromEntries(LEVELS.filter((l) => state[l] !== undefined).map((l) => [l, state[l]]));
  const tree = buildTree(jobs);
  const matching = jobs.filter((j) => jobMatches(j, path, state.q || ""));
  const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE));
  const page = Math.min(Math.max(1, state.page || 1), pages);
  const rows = matching.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);

  const select = (sel) => onState({ ...sel, q: state.q, page: 1 });

  function nodeList(node, trail, depth) {
    const items = [...node.children.values()].sort((a, b) => a.value.localeCompare(b.value));
    return h(
      "ul",
      { class: depth === 0 ? "tree" : "subtree" },
      items.map((child) => {
        const here = { ...trail, [child.key]: child.value };
        const selected = LEVELS.every((l) => here[l] === path[l]);
        const open = LEVELS.slice(0, depth + 1).every((l) => path[l] === here[l]) && depth < 2;
        const label = child.value || t("none");
        return h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "node" + (selected ? " selected" : ""),
              "aria-current": selected ? "true" : undefined,
              "aria-expanded": depth < 2 ? String(open) : undefined, // company and owt nodes open below
              "data-node": LEVELS.slice(0, depth + 1).map((l) => here[l]).join("/"),
              title: `${t(child.key)}: ${label}`,
              onclick: () => select(here),
            },
            h("span", { class: "level" }, t(child.key)),
            " ",
            label,
            " ",
            h("span", { class: "count" }, `(${child.count})`),
          ),
          open ? nodeList(child, here, depth + 1) : null,
        );
      }),
    );
  }

  let searchTimer = null;
  const search = h("input", {
    id: "search",
    type: "search",
    value: state.q || "",
    autocomplete: "off",
    oninput: (e) => {
      clearTimeout(searchTimer);
      const q = e.target.value;
      searchTimer = setTimeout(() => onState({ ...path, q, page: 1 }, { keepFocus: "search" }), 150);
    },
  });

  const table = rows.length
    ? h(
        "table",
        { class: "jobs" },
        h("caption", { class: "sr-only" }, t("jobs")),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, t("job")), h("th", { scope: "col" }, t("mode")),
            h("th", { scope: "col" }, t("effective_mode")), h("th", { scope: "col" }, t("version"))),
        ),
        h(
          "tbody",
          {},
          rows.map((j) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: `#/job/${encodeURIComponent(j.job)}`, class: "job-link" }, j.job)),
              h("td", {}, j.mode),
              h("td", {}, h("span", { class: `mode mode-${j.effective_mode}` }, j.effective_mode)),
              h("td", { class: "num" }, j.version),
            ),
          ),
        ),
      )
    : h("p", { class: "empty" }, t("no_jobs"));

  const pager = h(
    "nav",
    { class: "pager", "aria-label": t("page", page, pages, matching.length) },
    h("button", { type: "button", id: "prev", disabled: page <= 1, onclick: () => onState({ ...path, q: state.q, page: page - 1 }) }, t("prev")),
    h("span", { id: "page-info", "aria-live": "polite" }, t("page", page, pages, matching.length)),
    h("button", { type: "button", id: "next", disabled: page >= pages, onclick: () => onState({ ...path, q: state.q, page: page + 1 }) }, t("next")),
  );

  container.replaceChildren(
    h(
      "div",
      { class: "jobs-view" },
      h(
        "nav",
        { class: "tree-pane", "aria-label": t("tree") },
        h("h2", {}, t("tree")),
        h(
          "button",
          { type: "button", class: "node" + (Object.keys(path).length ? "" : " selected"), "data-node": "", onclick: () => select({}) },
          t("all_jobs"), " ", h("span", { class: "count" }, `(${tree.count})`),
        ),
        nodeList(tree, {}, 0),
      ),
      h(
        "section",
        { class: "list-pane", "aria-labelledby": "jobs-title" },
        h("h1", { id: "jobs-title" }, t("jobs")),
        h("div", { class: "search" }, h("label", { for: "search" }, t("search")), search),
        table,
        pager,
      ),
    ),
  );
  return { matching: matching.length, pages, page, rows: rows.length };
}
