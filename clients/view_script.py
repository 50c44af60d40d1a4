"""The viewer's one script (``static/viewer.js``) and the hash its pages pin it by.

Viewer pages allow exactly this file: their CSP's ``script-src`` is its SHA-384 hash (CSP 3
hash sources match an external script whose ``integrity`` carries the same hash), not
``'self'``. Every file of every bundle is served from the viewer's own origin too, so
``'self'`` would let a lesson's ``.js`` run in the viewer's page if a page ever named it;
a hash lets nothing else run, whatever its address.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

SCRIPT_URL = "/_/viewer.js"
SCRIPT = files("satchel.clients").joinpath("static/viewer.js").read_bytes()
SCRIPT_INTEGRITY = "sha384-" + base64.b64encode(hashlib.sha384(SCRIPT).digest()).decode()
