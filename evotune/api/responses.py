"""Responses built as bytes in the worker thread, so the event loop only sends them.

FastAPI validates and serializes a returned model again on the event loop; a route that
returns `JSONBytes` documents its model with `response_model=` and skips that second pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from starlette.responses import Response

__all__ = ["JSONBytes", "dump", "dump_list"]


class JSONBytes(Response):
    media_type = "application/json"


def dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def dump_list(models: Sequence[BaseModel]) -> bytes:
    return b"[" + b",".join(m.model_dump_json().encode() for m in models) + b"]"
