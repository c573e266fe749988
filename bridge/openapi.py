"""The OpenAPI 3.1 description of bridge's HTTP API, served at /openapi.json.

Written by hand and kept small: it documents the endpoints, their parameters and answers, so tools
(and schemathesis) can exercise the API. A test checks every route the app serves is described here.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad input (the body names every problem)", 401: "missing or wrong credentials",
        403: "admin API disabled", 404: "not found", 409: "conflict", 413: "body too large",
        415: "not JSON", 503: "storage unavailable",
    }
    return {str(c): _answer(text[c], _ERROR) for c in codes}


def _path_params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def document() -> dict[str, Any]:
    admin: list[dict[str, list[str]]] = [{"bearer": []}]
    approval_status = {"type": "string", "enum": ["new", "pending", "approved", "rejected", "revoked", "recalled"]}
    job_state = {"type": "string", "enum": ["pending", "running", "done", "dead"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bridge", "version": __version__,
                 "description": "Keeps DingTalk work-notification OA cards in step with approvals."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "object", "properties": {
                        "field": {"type": "string"}, "message": {"type": "string"}}}}}},
                "CanonicalEvent": {"type": "object", "required": ["approval_id", "status", "occurred_at"],
                                   "properties": {
                    "event_id": {"type": "string"}, "approval_id": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "approved", "rejected", "revoked", "deleted"]},
                    "occurred_at": {"type": "string", "format": "date-time"}, "title": {"type": "string"},
                    "recipients": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5000},
                    "applicant": {"type": "string"}, "url": {"type": "string"}, "pc_url": {"type": "string"},
                    "form": {"type": "array", "items": {"type": "object", "properties": {
                        "key": {"type": "string"}, "value": {"type": "string"}}}},
                    "amount": {"type": "object", "properties": {"num": {"type": "string"}, "unit": {"type": "string"}}},
                    "content": {"type": "string"}}},
            },
        },
        "paths": {
            "/webhooks/{source}": {"post": {
                "summary": "Receive an approval event from a source system",
                "parameters": _path_params("source"),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CanonicalEvent"}}}},
                "responses": {"202": _answer("accepted: stored durably"),
                              "200": _answer("duplicate: this event id was already accepted"),
                              **_errors(400, 401, 404, 413, 415, 503)}}},
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": _answer("alive")}}},
            "/readyz": {"get": {"summary": "Storage writable, worker running, DingTalk token obtainable",
                                "responses": {"200": _answer("ready"), "503": _answer("a check failed")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _answer("OpenAPI")}}},
            "/apps": {"get": {"summary": "Each DingTalk app with this process's token state, calls, errors and "
                                         "throttled calls", "security": admin,
                              "responses": {"200": _answer("the apps"), **_errors(401, 403)}}},
            "/approvals": {"get": {
                "summary": "List approvals, most recently updated first", "security": admin,
                "parameters": [_query("status", approval_status, "only this status"),
                               _query("source", {"type": "string"}, "only this source"),
                               _query("since", {"type": "string", "format": "date-time"}, "updated at or after"),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100")],
                "responses": {"200": _answer("approvals"), **_errors(400, 401, 403)}}},
            "/approvals/{source}/{approval_id}": {"get": {
                "summary": "One approval: status, cards, delivery results, jobs and history", "security": admin,
                "parameters": _path_params("source", "approval_id"),
                "responses": {"200": _answer("the approval"), **_errors(401, 403, 404)}}},
            "/approvals/{source}/{approval_id}/recall": {"post": {
                "summary": "Recall every card of the approval (stored as an operator's deleted event)",
                "security": admin, "parameters": _path_params("source", "approval_id"),
                "responses": {"202": _answer("recall accepted"), **_errors(401, 403, 404)}}},
            "/approvals/{source}/{approval_id}/resync": {"post": {
                "summary": "Re-apply the current status to every card", "security": admin,
                "parameters": _path_params("source", "approval_id"),
                "responses": {"202": _answer("jobs created"), **_errors(401, 403, 404)}}},
            "/events/{source}/{event_id}": {"get": {
                "summary": "One stored event with its outcome", "security": admin,
                "parameters": _path_params("source", "event_id"),
                "responses": {"200": _answer("the event"), **_errors(401, 403, 404)}}},
            "/jobs": {"get": {
                "summary": "List jobs", "security": admin,
                "parameters": [_query("state", job_state, "only this state"),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100")],
                "responses": {"200": _answer("jobs"), **_errors(400, 401, 403)}}},
            "/jobs/{job_id}/retry": {"post": {
                "summary": "Put one dead job back in the queue", "security": admin,
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _answer("retried"), **_errors(400, 401, 403, 404, 409)}}},
            "/jobs/retry": {"post": {
                "summary": "Put every dead job back in the queue", "security": admin,
                "parameters": [{"name": "state", "in": "query", "required": True,
                                "schema": {"type": "string", "enum": ["dead"]}}],
                "responses": {"200": _answer("retried"), **_errors(400, 401, 403)}}},
        },
    }
