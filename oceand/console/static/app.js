// The console's shell: hash routes (#/ the job tree and list, #/job/NAME a job, #/templates the
// templates, #/login), the language switch and the optional token login. The token is never put in a URL.

import { ApiError, api, getToken, setToken } from "./api.js";
import { h } from "./dom.js";
import { getLang, setLang, t } from "./i18n.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderTemplates } from "./templates.js";
import { LEVELS } from "./tree.js";

const main = document.getElementById("main");
let stop = null; // ends the current page's polling
let authMessage = "";
let afterLogin = "#/";

function chrome() {
  document.title = t("title");
  document.getElementById("brand").textContent = t("title");
  document.getElementById("nav-jobs").textContent = t("jobs");
  document.getElementById("nav-templates").textContent = t("templates");
  document.getElementById("skip").textContent = getLang() === "zh" ? "跳到正文" : "Skip to content";
  const lang = document.getElementById("lang");
  lang.textContent = t("language");
  lang.setAttribute("aria-label", t("language_label"));
  lang.setAttribute("lang", getLang() === "zh" ? "en" : "zh-CN");
  const signedIn = Boolean(getToken());
  document.getElementById("who").textContent = signedIn ? t("signed_in") : t("no_token");
  document.getElementById("nav-login").textContent = t("login");
  document.getElementById("nav-login").hidden = signedIn;
  const logout = document.getElementById("logout");
  logout.textContent = t("logout");
  logout.hidden = !signedIn;
}

function needAuth(e) {
  authMessage = e.status === 403 ? t("token_forbidden") + e.message : t("token_needed");
  afterLogin = location.hash && !location.hash.startsWith("#/login") ? location.hash : "#/";
  location.hash = "#/login";
}

function parseHash() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function jobsHash(state) {
  const q = new URLSearchParams();
  for (const l of LEVELS) if (state[l] !== undefined) q.set(l, state[l]);
  if (state.q) q.set("q", state.q);
  if (state.page && state.page > 1) q.set("page", String(state.page));
  const s = q.toString();
  return s ? `#/?${s}` : "#/";
}

let jobsCache = null;
let refocus = null;

async function showJobs(params) {
  const state = { q: params.get("q") || "", page: Number(params.get("page") || 1) };
  for (const l of LEVELS) if (params.has(l)) state[l] = params.get(l);
  if (!jobsCache) {
    main.replaceChildren(h("p", {}, t("loading")));
    jobsCache = (await api("GET", "/api/v1/jobs")).jobs;
  }
  const active = document.activeElement || {};
  const focused = active.dataset ? active.dataset.node : undefined;
  const focusedId = active.id && active.id !== "main" ? active.id : undefined;
  renderJobs(main, jobsCache, state, (next, opts = {}) => {
    refocus = opts.keepFocus || null;
    location.hash = jobsHash(next);
  });
  if (focused !== undefined) {
    // a tree node chosen with the keyboard keeps the focus across the re-render
    const again = main.querySelector(`button[data-node="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  } else if (focusedId) {
    const again = document.getElementById(focusedId); // the pager's buttons
    if (again && !again.disabled) again.focus();
  }
  if (refocus) {
    const el = document.getElementById(refocus);
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
    refocus = null;
  }
}

function showLogin() {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", "aria-describedby": "token-help token-err" });
  const err = h("p", { id: "token-err", class: "error", role: "alert" }, authMessage);
  const form = h(
    "form",
    {
      id: "login-form",
      class: "login",
      onsubmit: async (e) => {
        e.preventDefault();
        err.textContent = "";
        setToken(input.value.trim());
        try {
          await api("GET", "/api/v1/jobs");
        } catch (x) {
          if (x instanceof ApiError && (x.status === 401 || x.status === 403)) {
            setToken("");
            err.textContent = x.status === 401 ? t("token_refused") : t("token_forbidden") + x.message;
            chrome();
            return;
          }
          throw x;
        }
        authMessage = "";
        jobsCache = null;
        chrome();
        location.hash = afterLogin;
      },
    },
    h("h1", {}, t("login")),
    h("label", { for: "token" }, t("token")),
    input,
    h("p", { id: "token-help", class: "help" }, t("token_help")),
    err,
    h("button", { type: "submit", id: "login-submit", class: "primary" }, t("login")),
  );
  main.replaceChildren(form);
  input.focus();
}

async function route() {
  if (stop) {
    stop();
    stop = null;
  }
  chrome();
  const { path, params } = parseHash();
  try {
    if (path === "/login") showLogin();
    else if (path.startsWith("/job/")) {
      const name = decodeURIComponent(path.slice(5));
      jobsCache = null; // back on the list, it is read again (versions and modes may have changed)
      main.replaceChildren(h("p", {}, t("loading")));
      stop = await renderJob(main, name, needAuth);
      main.focus();
    } else if (path === "/templates") {
      main.replaceChildren(h("p", {}, t("loading")));
      await renderTemplates(main);
    } else await showJobs(params);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return needAuth(e);
    main.replaceChildren(
      h("p", { class: "warn", role: "alert" }, e instanceof ApiError && e.status === 404 ? t("not_found") : `${t("error")}: ${e.message}`),
      h("p", {}, h("a", { href: "#/" }, t("back"))),
    );
  }
}

document.getElementById("lang").addEventListener("click", () => {
  setLang(getLang() === "zh" ? "en" : "zh");
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  setToken("");
  jobsCache = null;
  location.hash = "#/login";
  chrome();
});
document.getElementById("nav-jobs").addEventListener("click", () => {
  jobsCache = null; // the list is read again when the user asks for it
});
window.addEventListener("hashchange", route);
setLang(getLang());
route();
