"""The HTTP edge both sides serve through: the read protocol's router, HTTP semantics (conditional
GET, Range, bounded bodies, Host checks) and one rendering of errors.

``satchel serve`` (:mod:`satchel.server`) and ``satchel share`` and ``satchel view``
(:mod:`satchel.clients`) are built on these pieces, so a rule of the protocol or of HTTP is
written once. This layer imports ``content`` and ``sync`` and the web framework, never
``server`` or ``clients``.
"""
