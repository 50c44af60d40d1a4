"""In-process HTTP testing helpers shared by the server test files."""

from __future__ import annotations

import warnings

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette warns at import time that it would rather use httpx2; pyproject makes every
    # warning an error, and the warning says nothing about the code under test.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

IMMUTABLE = "public, max-age=31536000, immutable"

__all__ = ["IMMUTABLE", "TestClient"]
