"""Satchel's server: a thin FastAPI adapter over :mod:`satchel.server.service`."""
