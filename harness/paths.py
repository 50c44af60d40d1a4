"""Where things are: the checkout, and the shared third-party data beside it.

``../shared`` holds the corpus and the FastCDC test data; it is read in place, never copied.
A checkout elsewhere has none, and the tests that need it skip with a reason;
``SATCHEL_SHARED`` points at another copy (a second worktree, say).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SATCHEL_SHARED") or REPO.parent / "shared")
CORPUS = SHARED / "corpus"
FASTCDC_DIR = SHARED / "testdata" / "fastcdc"
