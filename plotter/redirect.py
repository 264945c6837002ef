"""The plain-HTTP listener of the appliance (port 80): every request is sent on to the
same host and path over HTTPS (308, so a method and body are kept)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["redirect_app", "target"]


def target(host_header: str, path: str, query: str, https_port: int) -> str:
    """The HTTPS URL for a request to ``host_header`` (which may carry a port)."""
    host = host_header or "localhost"
    if host.startswith("["):
        host = host[:host.index("]") + 1] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0]
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://{host}{port}{path}" + (f"?{query}" if query else "")


def redirect_app(https_port: int) -> Callable[..., Awaitable[None]]:
    """A bare ASGI app answering every HTTP request with a redirect to HTTPS."""

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope.get("headers") or [])
        url = target(headers.get(b"host", b"").decode("latin-1"), scope.get("path", "/"),
                     scope.get("query_string", b"").decode("latin-1"), https_port)
        await send({"type": "http.response.start", "status": 308,
                    "headers": [(b"location", url.encode("latin-1")),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    return app
