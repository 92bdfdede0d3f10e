"""``/openapi.json``: the OpenAPI 3 document of the REST API, made from the endpoints'
``Spec`` (one source for the routes and their description)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from chatroom.core.model import JSON

from .base import Spec

_ERROR: JSON = {
    "type": "object",
    "required": ["code", "error"],
    "properties": {"code": {"type": "integer"}, "error": {"type": "string"}},
}
# Every refusal a call may answer, with LeanCloud's error JSON.
_REFUSALS = {
    "400": "bad parameters or a refusal of the service (an IM error code)",
    "401": "no or a wrong master key (or IM session token)",
    "403": "not allowed (an IM error code), or the API is off",
    "404": "no such conversation or message",
    "413": "a body or a message too large",
    "429": "over a rate limit",
    "503": "the store failed or did not answer in time",
}
_PATH_PARAM = re.compile(r"{(\w+)}")


def _schema(kind: str) -> JSON:
    name = kind.rstrip("!")
    if name == "array":
        return {"type": "array", "items": {"type": "string"}}
    return {"type": name}


def _operation(spec: Spec, method: str) -> JSON:
    parameters: list[JSON] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(spec.full_path)
    ]
    parameters.extend(
        {"name": n, "in": "query", "required": k.endswith("!"), "schema": _schema(k)}
        for n, k in spec.query.items()
    )
    responses: dict[str, JSON] = {
        str(spec.ok): {"description": "done", "content": {"application/json": {"schema": {}}}}
    }
    for status, text in _REFUSALS.items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": _ERROR}},
        }
    operation: dict[str, JSON] = {
        "summary": spec.summary,
        "operationId": f"{method}{spec.full_path}",
        "parameters": parameters,
        "responses": responses,
        "security": [{"masterKey": []}] if spec.master else [{"imSession": []}],
    }
    if method in ("post", "put", "delete") and spec.body is not None:
        required = [n for n, k in spec.body.items() if k.endswith("!")]
        schema: dict[str, JSON] = {
            "type": "object",
            "properties": {n: _schema(k) for n, k in spec.body.items()},
        }
        if required:
            schema["required"] = required  # type: ignore[assignment]
        operation["requestBody"] = {
            "required": bool(required),
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def document(specs: Sequence[Spec]) -> JSON:
    paths: dict[str, dict[str, JSON]] = {}
    for spec in specs:
        for method in spec.methods:
            paths.setdefault(spec.full_path, {})[method.lower()] = _operation(spec, method.lower())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "chatroom REST API",
            "version": "1.2",
            "description": "LeanCloud's IM REST API 1.2 as chatroom serves it (docs/rest.md).",
        },
        "paths": paths,  # type: ignore[dict-item]
        "components": {
            "securitySchemes": {
                "masterKey": {"type": "apiKey", "in": "header", "name": "X-LC-Key"},
                "imSession": {"type": "apiKey", "in": "header", "name": "X-LC-IM-Session-Token"},
            }
        },
    }
