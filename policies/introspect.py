"""Which pydantic models a field of the schema holds: shared by ``sample`` and ``reference``.

Pure; knows nothing of the policy models themselves.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

_UNIONS = (typing.Union, types.UnionType)


def nested_models(annotation: Any, *, in_lists: bool = True) -> list[type[BaseModel]]:
    """The models ``annotation`` holds, in order, each once.

    Looks through ``Annotated`` and unions (``Drill | None`` gives ``[Drill]``, a union
    of two models gives both) and, unless ``in_lists`` is false, into the items of
    lists and tuples (``list[DrillCheck]`` gives ``[DrillCheck]``). ``[]`` for a field
    holding no model (text, a number, a list of text).
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)[:1]  # the type; the rest is metadata
    elif origin in _UNIONS or (in_lists and origin in (list, tuple)):
        args = typing.get_args(annotation)
    else:
        return []
    found: list[type[BaseModel]] = []
    for arg in args:
        for model in nested_models(arg, in_lists=in_lists):
            if model not in found:
                found.append(model)
    return found

