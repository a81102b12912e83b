"""The OpenAPI 3.1 document of the JSON API and the webhook.

Built here rather than kept as a file so that the enumerations (statuses,
platforms, actions) come from the code that enforces them; a schemathesis
test (tests/web/test_openapi.py) keeps the rest true.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app import posts, queue
from app.config import PLATFORMS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object with these properties, all required unless told otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def answer(description: str, schema: Schema) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def errors(*statuses: int) -> dict[str, Schema]:
    meaning = {
        400: "The body is not a JSON object.",
        401: "Missing or invalid credentials (bearer token or signature).",
        404: "No post has that id.",
        409: "The post's status does not allow the action.",
        413: "The body is larger than the limit.",
        422: "A field is missing or malformed; `field` names it.",
        503: "The database is unavailable (or the webhook secret is not set).",
    }
    return {str(s): answer(meaning[s], ref("Error")) for s in statuses}


def unauthorized() -> Schema:
    return {
        **answer("Missing or invalid bearer token.", ref("Error")),
        "headers": {"WWW-Authenticate": {"schema": STRING, "required": True}},
    }


POST = obj(
    {
        "id": UUID,
        "profile_id": STRING,
        "platform": STRING,
        "content": {"type": "object"},
        "scheduled_at": TIME,
        "status": ref("Status"),
        "attempts": {"type": "integer", "minimum": 0},
        "next_attempt_at": nullable(TIME),
        "last_error": nullable(STRING),
        "created_at": TIME,
        "updated_at": TIME,
        "error_kind": nullable(ref("ErrorKind")),
        "remote_id": nullable(STRING),
        "remote_url": nullable(STRING),
        "posted_at": nullable(TIME),
        "source": STRING,
        "source_ref": nullable(STRING),
    }
)
ATTEMPT = obj(
    {
        "number": {"type": "integer"},
        "worker": STRING,
        "started_at": TIME,
        "finished_at": nullable(TIME),
        "outcome": nullable({"enum": ["published", "failed", "lease_expired"]}),
        "error_kind": nullable(ref("ErrorKind")),
        "error_message": nullable(STRING),
        "http_status": nullable({"type": "integer"}),
        "remote_id": nullable(STRING),
    }
)
EVENT = obj(
    {
        "id": {"type": "integer"},
        "at": TIME,
        "action": STRING,
        "actor": STRING,
        "from_status": nullable(ref("Status")),
        "to_status": ref("Status"),
        "detail": nullable({"type": "object"}),
    }
)
OUTCOME = obj(
    {
        "id": UUID,
        "status": nullable(ref("Status")),
        "changed": {"type": "boolean"},
        "reason": nullable(STRING),
    }
)
PLATFORM = obj(
    {
        "platform": STRING,
        "display_name": STRING,
        "paused": {"type": "boolean"},
        "paused_reason": nullable(STRING),
        "paused_at": nullable(TIME),
        "paused_by": nullable(STRING),
    }
)
COUNTS = obj({status: {"type": "integer"} for status in posts.STATUSES})
INTEGRATION = obj(
    {
        "platform": STRING,
        "display_name": STRING,
        "configured": {"type": "boolean"},
        "credentials": obj(
            {"env": {"type": "array", "items": STRING}, "accounts": {"type": "integer"}}
        ),
        "mode": {"enum": ["live", "sandbox", "custom"]},
        "base_url": nullable(STRING),
        "paused": {"type": "boolean"},
        "paused_reason": nullable(STRING),
        "paused_at": nullable(TIME),
        "counts": COUNTS,
        "last_success_at": nullable(TIME),
        "last_error": nullable(
            obj(
                {
                    "at": nullable(TIME),
                    "kind": nullable(ref("ErrorKind")),
                    "message": nullable(STRING),
                }
            )
        ),
    }
)
CONTENT = {
    "type": "object",
    "properties": {
        "text": STRING,
        "mediaUrls": {"type": "array", "items": STRING},
        "options": {"type": "object"},
    },
}
SCHEDULE = {
    "type": "object",
    "description": "The event's fields; which are required depends on `type` "
    "(see docs/webhook.md).",
    "properties": {
        "scheduleId": STRING,
        "profileId": STRING,
        "platform": {"type": "string", "enum": list(PLATFORMS)},
        "scheduledAt": TIME,
        "previousScheduledAt": TIME,
        "content": CONTENT,
        "options": {"type": "object"},
    },
}
WEBHOOK_ANSWER = {
    "type": "object",
    "properties": {
        "event": obj({"id": STRING, "type": STRING}),
        "result": {
            "enum": [
                "enqueued",
                "already_enqueued",
                "cancelled",
                "rescheduled",
                "nothing_to_do",
                "ignored",
            ]
        },
        "post": obj({"id": UUID, "status": ref("Status")}),
        "cancelled": {"type": "array", "items": UUID},
        "rescheduled": {"type": "array", "items": UUID},
        "untouched": {
            "type": "array",
            "items": obj({"id": UUID, "status": ref("Status"), "reason": STRING}),
        },
    },
    "required": ["event", "result"],
}
ERROR = obj(
    {
        "error": obj(
            {"code": STRING, "message": STRING, "field": nullable(STRING)},
        )
    }
)


def optional_body(properties: dict[str, Schema]) -> Schema:
    """A JSON object body that may be left out, all of its fields optional."""
    return {
        "required": False,
        "content": {
            "application/json": {"schema": {"type": "object", "properties": properties}}
        },
    }


def _post_id() -> Schema:
    return {"name": "id", "in": "path", "required": True, "schema": UUID}


OUTCOME_CHECKED: Schema = {
    "type": "boolean",
    "default": False,
    "description": "Someone checked the platform: the last attempt of a post "
    "failed with unknown_outcome did not publish. Without it such a post is "
    "refused with 409.",
}


def _action(action: str, summary: str) -> Schema:
    operation: Schema = {
        "operationId": f"{action}Post",
        "summary": summary,
        "tags": ["posts"],
        "security": [{"bearer": []}],
        "parameters": [_post_id()],
        "responses": {
            "200": answer("The post after the change.", obj({"post": POST})),
            "401": unauthorized(),
            **errors(404, 409, 422, 503),
        },
    }
    if action == "retry":
        operation["requestBody"] = optional_body({"outcome_checked": OUTCOME_CHECKED})
        operation["responses"].update(errors(400, 413))
    return {"post": operation}


def _platform_action(action: str, with_reason: bool) -> Schema:
    operation: Schema = {
        "operationId": f"{action}Platform",
        "summary": f"{action.capitalize()} publishing to a whole platform.",
        "tags": ["platforms"],
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "platform", "in": "path", "required": True, "schema": STRING}
        ],
        "responses": {
            "200": answer("The platform's state.", obj({"platform": PLATFORM})),
            "401": unauthorized(),
            **errors(400, 413, 422, 503),
        },
    }
    if with_reason:
        operation["requestBody"] = optional_body(
            {"reason": {"type": "string", "maxLength": 500}}
        )
    return {"post": operation}


SUMMARIES = {
    "pause": "Hold a post back (queued|retrying → paused).",
    "resume": "Put a paused post back in the queue (paused → queued).",
    "retry": "Try a post again now with a fresh budget (failed|retrying|paused → "
    "queued); a post whose outcome is unknown needs outcome_checked.",
    "cancel": "Make sure a post is never published (queued|retrying|paused|failed "
    "→ cancelled).",
}

LIST_PARAMETERS = [
    {
        "name": "status",
        "in": "query",
        "description": "Comma-separated statuses: " + ", ".join(posts.STATUSES),
        "schema": STRING,
    },
    {
        "name": "platform",
        "in": "query",
        "description": "Comma-separated platforms: " + ", ".join(PLATFORMS),
        "schema": STRING,
    },
    {"name": "profile", "in": "query", "schema": {"type": "string", "maxLength": 200}},
    {
        "name": "q",
        "in": "query",
        "description": "Text the post contains (case-insensitive).",
        "schema": {"type": "string", "maxLength": 200},
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "`next_cursor` of the previous page.",
        "schema": STRING,
    },
]

SPEC: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Social Queue",
        "version": "1",
        "description": "iCadence's webhook and the ops JSON API. Errors are "
        '`{"error": {"code", "message", "field"}}`.',
    },
    "paths": {
        "/webhooks/icadence": {
            "post": {
                "operationId": "receiveICadenceEvent",
                "summary": "Receive an iCadence schedule event (see docs/webhook.md).",
                "tags": ["webhook"],
                "parameters": [
                    {
                        "name": "X-ICadence-Signature",
                        "in": "header",
                        "required": True,
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of "
                        '"{t}.{raw body}">',
                        "schema": STRING,
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["type"],
                                "properties": {
                                    "id": STRING,
                                    "type": STRING,
                                    "createdAt": TIME,
                                    "data": SCHEDULE,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": answer(
                        "Committed (or a redelivery: the same answer again).",
                        WEBHOOK_ANSWER,
                    ),
                    **errors(400, 401, 409, 413, 422, 503),
                },
            }
        },
        "/api/ops/social-queue": {
            "get": {
                "operationId": "listPosts",
                "summary": "Posts, newest scheduled first, keyset-paginated.",
                "tags": ["posts"],
                "security": [{"bearer": []}],
                "parameters": LIST_PARAMETERS,
                "responses": {
                    "200": answer(
                        "A page of posts.",
                        obj(
                            {
                                "items": {"type": "array", "items": POST},
                                "next_cursor": nullable(STRING),
                            }
                        ),
                    ),
                    "401": unauthorized(),
                    **errors(422, 503),
                },
            }
        },
        "/api/ops/social-queue/bulk": {
            "post": {
                "operationId": "bulkAction",
                "summary": "Apply one action to many posts; one result per id.",
                "tags": ["posts"],
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": obj(
                                {
                                    "action": {"enum": list(queue.ACTIONS)},
                                    "ids": {
                                        "type": "array",
                                        "items": UUID,
                                        "minItems": 1,
                                        "maxItems": 500,
                                    },
                                    "outcome_checked": OUTCOME_CHECKED,
                                },
                                required=["action", "ids"],
                            )
                        }
                    },
                },
                "responses": {
                    "200": answer(
                        "What happened to each distinct id.",
                        obj(
                            {
                                "action": {"enum": list(queue.ACTIONS)},
                                "results": {"type": "array", "items": OUTCOME},
                            }
                        ),
                    ),
                    "401": unauthorized(),
                    **errors(400, 413, 422, 503),
                },
            }
        },
        "/api/ops/social-queue/{id}": {
            "get": {
                "operationId": "getPost",
                "summary": "One post with its attempts and status events.",
                "tags": ["posts"],
                "security": [{"bearer": []}],
                "parameters": [_post_id()],
                "responses": {
                    "200": answer(
                        "The post.",
                        obj(
                            {
                                "post": POST,
                                "attempts": {"type": "array", "items": ATTEMPT},
                                "events": {"type": "array", "items": EVENT},
                            }
                        ),
                    ),
                    "401": unauthorized(),
                    **errors(404, 422, 503),
                },
            }
        },
        **{
            f"/api/ops/social-queue/{{id}}/{action}": _action(action, summary)
            for action, summary in SUMMARIES.items()
        },
        "/api/ops/platforms/{platform}/pause": _platform_action("pause", True),
        "/api/ops/platforms/{platform}/resume": _platform_action("resume", False),
        "/api/integrations/status": {
            "get": {
                "operationId": "integrationsStatus",
                "summary": "Per platform: configured, paused, counts, last success "
                "and last error.",
                "tags": ["status"],
                "security": [{"bearer": []}],
                "responses": {
                    "200": answer(
                        "One entry per platform.",
                        obj({"platforms": {"type": "array", "items": INTEGRATION}}),
                    ),
                    "401": unauthorized(),
                    **errors(503),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Database reachable and migrations current.",
                "tags": ["status"],
                "responses": {
                    "200": answer("Healthy.", ref("Health")),
                    "503": answer("Unhealthy; the body says why.", ref("Health")),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["status"],
                "responses": {"200": answer("OpenAPI 3.1", {"type": "object"})},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Status": {"enum": list(posts.STATUSES)},
            "ErrorKind": {
                "enum": [
                    "transient",
                    "rate_limited",
                    "auth",
                    "invalid",
                    "config",
                    "unknown_outcome",
                ]
            },
            "Error": ERROR,
            "Health": obj(
                {
                    "database": STRING,
                    "migrations": nullable({"enum": ["current", "pending"]}),
                    "pending": {"type": "array", "items": STRING},
                },
                required=["database", "migrations"],
            ),
        },
    },
}


async def document(request: Request) -> Response:
    return JSONResponse(SPEC)
