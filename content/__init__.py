"""Satchel's formats: chunking, chunk ids, stored objects, manifests, signatures.

Pure code: bytes and files in, bytes and values out. Nothing here talks to a network or a
database, so every rule about what is valid lives in one place that is cheap to test.
"""
