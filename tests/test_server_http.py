from fastapi.testclient import TestClient


def test_x():
    assert TestClient
