// Labels in Chinese (the seed's words) and English. `t(key)` in the current language; the switch in
// the header stores the choice in localStorage (a preference, not a secret).

const LABELS = {
  title: ["oceand 控制台", "oceand console"],
  jobs: ["任务管理", "Jobs"],
  login: ["登录", "Sign in"],
  logout: ["退出", "Sign out"],
  token: ["令牌", "Token"],
  token_help: [
    "管理接口的令牌（Bearer）。只保存在本浏览器标签页的会话中。未开启认证时可留空。",
    "The admin API token (Bearer). Kept only in this tab's session. Leave empty when auth is off.",
  ],
  token_needed: ["需要令牌：管理接口回答 401。", "A token is needed: the admin API answered 401."],
  token_refused: ["令牌被拒绝（401）。", "The token was refused (401)."],
  token_forbidden: ["令牌权限不足（403）：", "The token is not allowed (403): "],
  signed_in: ["已登录", "Signed in"],
  no_token: ["未登录（认证关闭时无需登录）", "No token (none needed while auth is off)"],
  language: ["English", "中文"],
  language_label: ["切换语言", "Switch language"],
  tree: ["服务树", "Service tree"],
  all_jobs: ["全部任务", "All jobs"],
  cop: ["公司", "Company"],
  owt: ["部门 (owt)", "Org (owt)"],
  pdl: ["产品线", "Product line"],
  none: ["（无）", "(none)"],
  search: ["搜索任务名", "Search job names"],
  job: ["任务", "Job"],
  mode: ["模式", "Mode"],
  effective_mode: ["生效模式", "Effective mode"],
  version: ["版本", "Version"],
  page: ["第 {0} / {1} 页，共 {2} 个任务", "Page {0} of {1}, {2} jobs"],
  prev: ["上一页", "Previous"],
  next: ["下一页", "Next"],
  no_jobs: ["没有匹配的任务", "No matching jobs"],
  back: ["← 任务管理", "← Jobs"],
  status: ["实时状态", "Live status"],
  instances: ["实例数", "Instances"],
  running: ["运行中", "Running"],
  ready: ["就绪", "Ready"],
  bounds: ["上下限", "Bounds"],
  deploying: ["部署中", "Deployment in progress"],
  cooldown: ["冷却剩余", "Cooldown left"],
  app_unknown: ["Marathon 中尚未读到该应用", "The app is not known from Marathon yet"],
  blocked: ["Marathon 拒绝了伸缩，修改作业前不再执行", "Marathon refused a scale: nothing is applied until the job changes"],
  retry_at: ["伸缩失败，将于此时重试", "A scale failed; it is tried again at"],
  updated: ["更新于", "Updated"],
  rule: ["规则", "Rule"],
  value: ["当前值", "Value"],
  streaks: ["连续次数 (扩/缩)", "Streaks (out/in)"],
  next_fire: ["下次触发", "Next fire"],
  autoscale: ["自动伸缩", "Autoscaling"],
  autoscale_help: [
    "对应任务文档中的一条阈值规则（threshold）。",
    "Edits one threshold rule of the job document.",
  ],
  which_rule: ["阈值规则", "Threshold rule"],
  new_rule: ["（新建）", "(new)"],
  metric: ["监控指标", "Metric"],
  aggregate: ["聚合方式", "Aggregate"],
  min_instances: ["最小实例数", "Min instances"],
  max_instances: ["最大实例数", "Max instances"],
  scale_out: ["加实例", "Scale out"],
  scale_in: ["减实例", "Scale in"],
  consecutive: ["连续次数", "Consecutive hits"],
  above: ["大于阈值", "Above"],
  below: ["小于阈值", "Below"],
  step: ["步长", "Step"],
  side_off: ["阈值留空即不启用", "Leave the threshold empty to turn this side off"],
  notify_group: ["通知组", "Notify group"],
  schedule: ["定时伸缩", "Scheduled scaling"],
  schedule_help: [
    "每行一条定时规则：从开始时间起按重复间隔把实例数设为指定值（或用 cron）。",
    "One schedule rule per row: from the start time, every interval, set the instance count (or use cron).",
  ],
  name: ["名称", "Name"],
  start: ["开始时间", "Start"],
  every: ["重复间隔", "Interval"],
  cron: ["cron", "cron"],
  timezone: ["时区", "Time zone"],
  add_row: ["添加定时规则", "Add a schedule"],
  delete_row: ["删除", "Delete"],
  delete_row_label: ["删除定时规则 {0}", "Delete schedule {0}"],
  no_schedules: ["没有定时规则", "No schedules"],
  save: ["保存", "Save"],
  saving: ["保存中…", "Saving…"],
  saved: ["已保存（版本 {0}）", "Saved (version {0})"],
  unchanged: ["无变化（版本 {0}）", "Unchanged (version {0})"],
  errors: ["{0} 处错误，见各字段旁的说明", "{0} error(s): see the messages next to the fields"],
  other_errors: ["其它错误", "Other errors"],
  lb: ["负载均衡绑定", "Load balancer bindings"],
  no_lb: ["没有绑定负载均衡", "No load balancers"],
  lb_type: ["类型", "Type"],
  lb_target: ["目标", "Target"],
  port_index: ["端口序号", "Port index"],
  weight: ["权重", "Weight"],
  drain: ["摘除等待", "Drain"],
  backends: ["后端", "Backends"],
  decisions: ["决策记录", "Decision timeline"],
  no_decisions: ["还没有决策", "No decisions yet"],
  at: ["时间", "Time"],
  trigger: ["触发", "Trigger"],
  change: ["变化", "Change"],
  result: ["结果", "Result"],
  reasons: ["原因", "Reasons"],
  details: ["明细", "Details"],
  not_found: ["没有这个任务", "No such job"],
  error: ["错误", "Error"],
  loading: ["加载中…", "Loading…"],
  history_missing: [
    "历史曲线与“预览”需要历史接口（尚未提供）。",
    "The history chart and preview need the history API (not there yet).",
  ],
};

let lang = localStorage.getItem("oceand.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");

export function getLang() {
  return lang;
}

export function setLang(value) {
  lang = value === "zh" ? "zh" : "en";
  localStorage.setItem("oceand.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export function t(key, ...args) {
  const pair = LABELS[key];
  let text = pair ? pair[lang === "zh" ? 0 : 1] : key;
  args.forEach((a, i) => {
    text = text.replace(`{${i}}`, String(a));
  });
  return text;
}
