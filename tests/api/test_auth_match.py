"""Properties of the matching rules (issue 13): token names, job-name globs and job names."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oceand.auth import (
    GLOB_RE,
    TOKEN_NAME_RE,
    Principal,
    Token,
    TokenError,
    check_globs,
    check_name,
    glob_matches,
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
job_names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=60)
# small alphabets so globs and names often meet
small_jobs = st.text(alphabet="ab._", min_size=1, max_size=12)
small_globs = st.text(alphabet="ab._*?", min_size=1, max_size=8)


def reference(glob: str, name: str) -> bool:
    """A glob matcher written independently: dynamic programming over (glob position, name position)."""
    ok = [[False] * (len(name) + 1) for _ in range(len(glob) + 1)]
    ok[len(glob)][len(name)] = True
    for i in range(len(glob) - 1, -1, -1):
        for j in range(len(name), -1, -1):
            g = glob[i]
            if g == "*":
                ok[i][j] = ok[i + 1][j] or (j < len(name) and ok[i][j + 1])
            else:
                ok[i][j] = j < len(name) and (g == "?" or g == name[j]) and ok[i + 1][j + 1]
    return ok[0][0]


@given(small_globs, small_jobs)
def test_glob_agrees_with_a_reference_matcher(glob: str, job: str) -> None:
    assert glob_matches(glob, job) is reference(glob, job)
    assert glob_matches(glob, job) is fnmatch.fnmatchcase(job, glob)  # no [...] in the glob alphabet


@given(job_names)
def test_star_and_the_literal_name_match_every_job(job: str) -> None:
    assert glob_matches("*", job) and glob_matches(job, job)


@given(job_names, job_names)
def test_a_product_line_glob_is_a_suffix_test(job: str, suffix: str) -> None:
    assert glob_matches("*" + suffix, job) is job.endswith(suffix)


@given(st.lists(small_globs, min_size=1, max_size=4), small_jobs)
def test_a_token_touches_a_job_when_any_glob_matches(globs: list[str], job: str) -> None:
    p = Principal("t", frozenset({"read"}), tuple(globs))
    assert p.may_touch(job) is any(reference(g, job) for g in globs)


@given(st.text(max_size=80))
def test_token_names_accepted_are_exactly_the_grammar(name: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) is not None
    try:
        check_name(name)
        accepted = True
    except TokenError:
        accepted = False
    assert accepted is valid and (TOKEN_NAME_RE.match(name) is not None) is valid


@given(st.text(max_size=40))
def test_globs_accepted_are_exactly_the_grammar(glob: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9._*?-]{1,200}", glob) is not None
    try:
        check_globs([glob], ("read",))
        accepted = True
    except TokenError:
        accepted = False
    assert accepted is valid and (GLOB_RE.match(glob) is not None) is valid


@given(
    st.text(alphabet=NAME_CHARS, min_size=1, max_size=64),
    st.lists(st.sampled_from(["read", "write", "operate", "ingest"]), min_size=1, unique=True),
    st.lists(small_globs, min_size=1, max_size=3),
    st.none() | st.floats(min_value=0, max_value=1e10),
)
def test_token_records_round_trip(
    name: str, scopes: list[str], jobs: list[str], expires: float | None
) -> None:
    secret_hash, old_hash = "hash:secret", "hash:old"  # a ":" no token name holds
    t = Token(name, tuple(scopes), tuple(jobs), 1.0, expires, secret_hash, old_hash, 2.0, 3.0)
    assert Token.from_record(name, t.record()) == t
    shown = t.public(0.0)
    assert secret_hash not in shown.values() and old_hash not in shown.values()
    assert "secret_hash" not in shown and "old_hash" not in shown


@pytest.mark.parametrize("scopes", [("admin",), ("read", "admin")])
def test_admin_tokens_cover_every_job(scopes: tuple[str, ...]) -> None:
    with pytest.raises(TokenError, match="covers every job"):
        check_globs(["job.*"], scopes)
    assert check_globs(None, scopes) == ("*",)
