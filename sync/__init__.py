"""Satchel's protocol logic: stores, planning, pack streams, trust, updater, checkout.

No web framework and no sockets: the updater talks to a small :class:`~satchel.sync.fetcher.Fetcher`
interface, so the whole client workflow runs in tests against an in-memory repository.
"""
