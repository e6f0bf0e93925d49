"""Which keys a pydantic model allows at a validation error's location, and "did you mean" for an unknown one.

Shared by the config loader (`oceand.config`) and the job document (`policies.document`), which both
report `extra_forbidden` errors with the closest allowed key. Pure: only reads the models' fields.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel


def did_you_mean(root: type[BaseModel], loc: Sequence[int | str]) -> str:
    """' (did you mean 'x'?)' for the unknown key at `loc` (its last part) when a close one is allowed there,
    else ''."""
    if not loc or len(str(loc[-1])) > 100:  # no key is that long; difflib's time grows with it
        return ""
    close = difflib.get_close_matches(str(loc[-1]), allowed_keys(root, loc[:-1]), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def allowed_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the model at `loc` (a pydantic error location below `root`), [] if not a model.

    A location walks model fields, dict keys and list indexes; in a tagged union pydantic puts the tag
    (e.g. `threshold` in `rules.0.threshold.scale_out`), which picks the union member."""
    tp: Any = root
    for part in loc:
        members = _members(tp)
        tagged = [m for m in members if isinstance(part, str) and part in _tags(m)]
        if len(members) > 1 and tagged:
            tp = tagged[0]
            continue
        tp = members[0] if members else tp
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(str(part))
            if f is None:
                return []
            tp = f.annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return []
    members = _members(tp)
    tp = members[0] if members else tp
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _members(tp: Any) -> list[Any]:
    """The types `tp` may be, without Annotated wrappers and None."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) if a is not type(None) for m in _members(a)]
    return [tp]


def _tags(tp: Any) -> tuple[Any, ...]:
    """The values of a model's `type: Literal[...]` field (its tag in a discriminated union)."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return ()
    f = tp.model_fields.get("type")
    if f is None or typing.get_origin(f.annotation) is not typing.Literal:
        return ()
    return typing.get_args(f.annotation)
