"""The client side of the ``satchel`` command, one module per job: publishing, syncing and
checking out, the local store, USB sticks, sharing with the classroom, and the viewer.

Each module holds a ``commands`` Typer app; :mod:`satchel.cli` mounts them all as one command.
"""
