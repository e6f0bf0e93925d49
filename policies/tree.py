"""Ocean tree names (PRODUCT §1, §13): `job.web_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi` names
the job `web` of service `api` in cluster `lg` of product line `ocean`, owt `inf`, company `xiaomi`.

One rule for the daemon (job list filters, `POST /api/v1/modes` selectors), oceanctl and the console
(static/tree.js `treeParts`); the cases are one table, tests/console/tree_names.json.
"""

from __future__ import annotations

import re

TREE_KEYS = ("job", "service", "cluster", "pdl", "owt", "cop")
_TREE_SPLIT = re.compile(r"_(?=(?:" + "|".join(TREE_KEYS) + r")\.)")


def tree_parts(name: str) -> dict[str, str]:
    """`job.web_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi` -> {"job": "web", ..., "cop": "xiaomi"};
    a name that is no tree name gives {}."""
    parts: dict[str, str] = {}
    for piece in _TREE_SPLIT.split(name):
        key, dot, value = piece.partition(".")
        if dot and key in TREE_KEYS and value:
            parts.setdefault(key, value)
    return parts
