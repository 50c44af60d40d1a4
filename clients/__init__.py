"""Satchel's client side: the ``satchel`` command and the httpx transport it uses."""
