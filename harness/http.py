"""In-process HTTP testing helpers shared by the server test files."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount, Route

with warnings.catch_warnings():
    # Starlette warns at import time that it would rather use httpx2; pyproject makes every
    # warning an error, and the warning says nothing about the code under test.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

IMMUTABLE = "public, max-age=31536000, immutable"


def walk_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route of an app, included routers and mounted apps too."""
    for route in routes:
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                yield method, prefix + route.path
        elif isinstance(route, Mount):
            yield from walk_routes(route.routes, prefix + route.path)
        included = getattr(route, "original_router", None)  # app.include_router(...)
        if included is not None:
            yield from walk_routes(included.routes, prefix)


__all__ = ["IMMUTABLE", "TestClient", "walk_routes"]
