"""Benchmark: validating a hostile job document with many unknown fields (one admin API request).

A 1 MiB body can hold ~45,000 unknown fields. `parse_job` reports each one with its path; a "did you
mean" suggestion (difflib) costs ~0.2 ms a field, so it is given to the first 20 only. This measures
`parse_job` (the API's whole validation, messages included) against a baseline measured in the same run:
pydantic's own validation of the same document (`JobDocument.model_validate` + `errors()`). Prints the
best-of-N seconds of each and their ratio. Target: ratio <= 3 (paths and messages cost a few µs a field;
a suggestion for every field made it ~60x).

    .venv/bin/python bench/document.py [--fields 45000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ValidationError

from policies.document import DocumentError, JobDocument, parse_job


def hostile(fields: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"job": "web", "target": {"cluster": "lg", "app": "/bench/web"}}
    for i in range(fields):
        doc[f"min_instancez{i}"] = 1  # close to a real field: every one is a "did you mean" candidate
    return doc


def best(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fields", type=int, default=45000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    doc = hostile(args.fields)

    def baseline() -> None:
        try:
            JobDocument.model_validate(doc)
        except ValidationError as e:
            assert len(e.errors(include_url=False)) == args.fields

    def measured() -> None:
        try:
            parse_job(doc)
        except DocumentError as e:
            assert len(e.errors) == args.fields

    base = best(baseline, args.rounds)
    full = best(measured, args.rounds)
    print(f"{args.fields} unknown fields: parse_job {full:.3f} s, pydantic alone {base:.3f} s")
    print(f"ratio {full / base:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
