"""One definition of each metric name (issue 11): a Prometheus metric name is spelled only in
oceand/metrics.py, a rule metric the daemon feeds itself (`alb.qps`) only in oceand/ingest.py; every other
module uses the name through them. Docstrings and comments may mention names; code may not repeat them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from oceand.ingest import ALB_QPS
from oceand.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("oceand", "policies", "collectors", "actuators")


def prometheus_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def literals(path: Path) -> set[str]:
    """The string constants of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


@pytest.mark.parametrize(
    ("names", "home"),
    [
        pytest.param(prometheus_names, "oceand/metrics.py", id="Prometheus metric names"),
        pytest.param(lambda: {ALB_QPS}, "oceand/ingest.py", id="alb.qps"),
    ],
)
def test_each_metric_name_is_spelled_in_one_module(names: object, home: str) -> None:
    wanted = names()  # type: ignore[operator]
    assert wanted
    where = {
        str(p.relative_to(ROOT)): found
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if str(p.relative_to(ROOT)) != home and (found := literals(p) & wanted)
    }
    assert where == {}
