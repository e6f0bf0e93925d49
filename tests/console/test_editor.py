"""static/editor.js in Chromium: the job page's forms -> the job document sent with PUT, and which field
an API error path belongs to. Each case: the forms' values as the page has them, some edits, the
document and the field paths that come out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.console.conftest import Live

pytestmark = pytest.mark.slow

DOC: dict[str, Any] = {
    "job": "job.web_pdl.ocean_cop.xiaomi",
    "target": {"cluster": "lg", "app": "/ocean/web"},
    "min_instances": 1,
    "max_instances": 5,
    "rules": [
        {
            "name": "cpu",
            "type": "threshold",
            "metric": "cpu.used",
            "aggregate": "avg",
            "selector": {"tags": {"idc": "lg"}},
            "scale_out": {"above": 80, "consecutive": 3, "step": 1, "bands": [{"above": 95, "step": 3}]},
            "scale_in": {"below": 60, "consecutive": 3, "step": 1, "bands": []},
        },
        {
            "name": "morning",
            "type": "schedule",
            "start": "2026-01-01T07:00",
            "every": 86400,
            "instances": 4,
            "duration": 3600,
            "min_instances": 2,
        },
        {"name": "qps", "type": "target", "metric": "proc.qps", "target": 500},
        {"name": "night", "type": "schedule", "cron": "0 2 * * *", "instances": 2},
    ],
    "notify": {"group": "sre", "webhook": "http://127.0.0.1:9000/hook"},
}


def with_rules(*rules: dict[str, Any], **over: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d["rules"] = list(rules)
    d.update(over)
    return d


R = copy.deepcopy(DOC["rules"])
MORNING_SHOWN = {**R[1], "every": "1d"}  # a duration comes back as the form shows it (the API reads both)
NO_SCALE_IN = {k: v for k, v in R[0].items() if k != "scale_in"}

CASES = [
    pytest.param(
        {},
        with_rules(R[0], MORNING_SHOWN, R[2], R[3]),
        {
            "out_consecutive": "rules[0].scale_out.consecutive",
            "metric": "rules[0].metric",
            "notify_group": "notify.group",
        },
        [{"name": "rules[1].name"}, {"cron": "rules[3].cron"}],
        id="untouched forms keep everything, bands and selector and a window's overrides included",
    ),
    pytest.param(
        {"values": {"in_below": ""}},
        with_rules(NO_SCALE_IN, MORNING_SHOWN, R[2], R[3]),
        {},
        [],
        id="an empty threshold turns that side off",
    ),
    pytest.param(
        {"keep_rows": [1]},
        with_rules(R[0], R[2], R[3]),
        {},
        [{"cron": "rules[2].cron", "instances": "rules[2].instances"}],
        id="a deleted row goes and the later rows' paths follow",
    ),
    pytest.param(
        {"add_rows": [{"name": "evening", "start": "2026-01-01T19:00", "every": "12h", "instances": "3"}]},
        with_rules(
            R[0],
            MORNING_SHOWN,
            R[2],
            R[3],
            {
                "name": "evening",
                "type": "schedule",
                "start": "2026-01-01T19:00",
                "every": "12h",
                "instances": 3,
            },
        ),
        {},
        [{}, {}, {"every": "rules[4].every"}],
        id="a new row is a new schedule rule at the end",
    ),
    pytest.param(
        {"values": {"out_consecutive": "abc", "out_step": "50%", "max_instances": "2.5"}},
        with_rules(
            {**R[0], "scale_out": {**R[0]["scale_out"], "consecutive": "abc", "step": "50%"}},
            MORNING_SHOWN,
            R[2],
            R[3],
            max_instances=2.5,
        ),
        {},
        [],
        id="what is no number goes as typed for the API to name",
    ),
    pytest.param(
        {"values": {"notify_group": " "}},
        with_rules(R[0], MORNING_SHOWN, R[2], R[3], notify={"webhook": "http://127.0.0.1:9000/hook"}),
        {},
        [],
        id="an emptied notify group is left out",
    ),
    pytest.param(
        {
            "doc": with_rules(R[2]),
            "index": None,
            "values": {"metric": "cpu.used", "out_above": "80", "out_consecutive": "2"},
        },
        with_rules(
            R[2],
            {
                "name": "autoscale",
                "type": "threshold",
                "metric": "cpu.used",
                "aggregate": "avg",
                "scale_out": {"above": 80, "consecutive": 2},
            },
        ),
        {"out_above": "rules[1].scale_out.above"},
        [],
        id="a job without a threshold rule gets one when a metric is given",
    ),
    pytest.param(
        {"doc": with_rules(R[2]), "index": None},
        with_rules(R[2]),
        {},
        [],
        id="and none while the metric stays empty",
    ),
]

RUN = """
const [c, done] = [arguments[0], arguments[arguments.length - 1]];
import('/ui/editor.js').then(m => {
  const doc = c.doc;
  const index = c.index === undefined ? m.thresholdIndexes(doc)[0] ?? null : c.index;
  const values = {...m.autoscaleValues(doc, index), ...(c.values || {})};
  let rows = m.scheduleRows(doc);
  if (c.keep_rows) rows = c.keep_rows.map(k => rows[k]);
  for (const add of c.add_rows || []) {
    rows.push(Object.fromEntries([['orig', null], ...m.SCHEDULE_FIELDS.map(f => [f, add[f] || ''])]));
  }
  done(m.buildDocument(doc, index, values, rows));
}).catch(e => done({error: String(e)}));
"""


@pytest.mark.parametrize(("edits", "doc", "paths", "row_paths"), CASES)
def test_build_document(
    browser: Any,
    live: Live,
    edits: dict[str, Any],
    doc: dict[str, Any],
    paths: dict[str, str],
    row_paths: list[dict[str, str]],
) -> None:
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(RUN, {"doc": DOC, **edits})
    assert "error" not in got, got
    assert got["doc"] == doc
    assert got["paths"].items() >= paths.items()
    for have, want in zip(got["rowPaths"], row_paths, strict=False):
        assert have.items() >= want.items()
    assert len(got["rowPaths"]) >= len(row_paths)


FIELDS = {
    "f-out_consecutive": "rules[0].scale_out.consecutive",
    "s-0-name": "rules[3].name",
    "s-0-every": "rules[3].every",
    "f-min_instances": "min_instances",
}


@pytest.mark.parametrize(
    ("error_path", "field"),
    [
        pytest.param("rules[0].scale_out.consecutive", "f-out_consecutive", id="its own field"),
        pytest.param("rules[3]", "s-0-name", id="a whole schedule rule: its row's first cell"),
        pytest.param("rules[0].scale_out.bands[0].step", None, id="a field the form has not: none"),
        pytest.param("rules[30].every", None, id="rules[3] is no prefix of rules[30]"),
        pytest.param("(document)", None, id="the whole document: none"),
    ],
)
def test_field_for(browser: Any, live: Live, error_path: str, field: str | None) -> None:
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/ui/editor.js').then(m => done(m.fieldFor(arguments[0], Object.fromEntries(arguments[1]))));",
        error_path,
        list(FIELDS.items()),  # in the page's order (a dict would reach the page with its keys sorted)
    )
    assert got == field


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        pytest.param("", None, id="empty: left out (the API's default)"),
        pytest.param("90", 90, id="bare number: seconds"),
        pytest.param("0s", 0, id="0s"),
        pytest.param("2m", 120, id="minutes"),
        pytest.param("1.5h", 5400, id="fraction of an hour"),
        pytest.param("1d", 86400, id="a day"),
        pytest.param("soon", "soon", id="not a duration: sent as typed, for the API to name"),
        pytest.param("-5s", "-5s", id="negative: sent as typed"),
    ],
)
def test_preview_startup_seconds(browser: Any, live: Live, typed: str, sent: Any) -> None:
    """The preview's startup field (a duration as people write it) -> the seconds POST …/preview takes."""
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/ui/editor.js').then(m => { const v = m.seconds(arguments[0]); done(v === undefined ? null : v); });",
        typed,
    )
    assert got == sent
