"""API errors as Kubernetes ``Status`` objects."""

from __future__ import annotations

from typing import Any

from planet_operator.kubeapi.registry import ResourceInfo


class APIError(Exception):
    """An error with the HTTP code and the Status body the server answers with."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` object."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _resource(info: ResourceInfo) -> str:
    return f"{info.plural}.{info.group}" if info.group else info.plural


def not_found(info: ResourceInfo, name: str) -> APIError:
    """404."""
    return APIError(404, "NotFound", f'{_resource(info)} "{name}" not found',
                    {"name": name, "group": info.group, "kind": info.plural})  # fmt: skip


def already_exists(info: ResourceInfo, name: str) -> APIError:
    """409 on create."""
    return APIError(409, "AlreadyExists", f'{_resource(info)} "{name}" already exists',
                    {"name": name, "group": info.group, "kind": info.plural})  # fmt: skip


def conflict(info: ResourceInfo, name: str) -> APIError:
    """409 on a stale resourceVersion."""
    message = (
        f'Operation cannot be fulfilled on {_resource(info)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return APIError(409, "Conflict", message, {"name": name, "group": info.group, "kind": info.plural})


def invalid(
    info: ResourceInfo, name: str, message: str, causes: list[tuple[str, str]] | None = None
) -> APIError:
    """422; ``causes`` are (field, message) pairs, which kubectl prints one per line."""
    details: dict[str, Any] = {"name": name, "group": info.group, "kind": info.kind}
    if causes:
        details["causes"] = [{"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes]
    return APIError(422, "Invalid", f'{info.kind} "{name}" is invalid: {message}', details)


def bad_request(message: str) -> APIError:
    """400."""
    return APIError(400, "BadRequest", message)


def unsupported_media(content_type: str) -> APIError:
    """415."""
    return APIError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )


def gone(since: int) -> APIError:
    """410: the watch asked for history that was already dropped."""
    return APIError(410, "Expired", f"too old resource version: {since}")


def no_resource(path: str) -> APIError:
    """404 for a path that names no known resource."""
    return APIError(404, "NotFound", f"the server could not find the requested resource ({path})")
