"""Satchel's server: FastAPI and SQLModel adapters over :mod:`satchel.server.repository`."""
