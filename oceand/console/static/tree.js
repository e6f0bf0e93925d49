// Ocean tree names, the same rule as oceanctl's `tree_parts` (oceand/ctl/main.py); both are checked
// against one table of cases (tests/console/tree_names.json) by pytest and in the browser.
//
// `job.web_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi` -> {job: "web", service: "api",
// cluster: "lg", pdl: "ocean", owt: "inf", cop: "xiaomi"}: the name is split at each `_` that is
// followed by one of the keys and a dot; each piece is `key.value`; the first piece of a key counts.
// A name that is no tree name gives {}.

export const TREE_KEYS = ["job", "service", "cluster", "pdl", "owt", "cop"];
const SPLIT = new RegExp("_(?=(?:" + TREE_KEYS.join("|") + ")\\.)");

export function treeParts(name) {
  const parts = {};
  for (const piece of name.split(SPLIT)) {
    const dot = piece.indexOf(".");
    if (dot < 0) continue;
    const key = piece.slice(0, dot);
    const value = piece.slice(dot + 1);
    if (TREE_KEYS.includes(key) && value && !(key in parts)) parts[key] = value;
  }
  return parts;
}

// The tree the console shows: company -> owt -> product line, each with its jobs. A job whose name
// lacks a level sits under "" at that level (shown as "(none)").
export const LEVELS = ["cop", "owt", "pdl"];

export function buildTree(jobs) {
  const root = { key: null, value: null, count: 0, children: new Map() };
  for (const job of jobs) {
    const parts = treeParts(job.job);
    let node = root;
    node.count++;
    for (const level of LEVELS) {
      const value = parts[level] || "";
      if (!node.children.has(value)) {
        node.children.set(value, { key: level, value, count: 0, children: new Map() });
      }
      node = node.children.get(value);
      node.count++;
    }
  }
  return root;
}

// Does `job` sit under the selected path ({cop, owt, pdl}, each optional) and match the search text?
export function jobMatches(job, path, search) {
  const parts = treeParts(job.job);
  for (const level of LEVELS) {
    if (path[level] !== undefined && (parts[level] || "") !== path[level]) return false;
  }
  return !search || job.job.toLowerCase().includes(search.toLowerCase());
}
