"""The deployment files: docker-compose.yml, deploy/nginx.conf, Dockerfile.

Docker cannot run on the machines these tests run on, so docker-compose.yml is checked as data
(YAML): the services the deployment needs, replicas that share one key, database and bucket,
and a ``satchel serve`` command whose every option the real CLI knows (so the file cannot
drift from the code). deploy/nginx.conf is checked for real: Debian's nginx runs it on
loopback in front of a real ``satchel serve`` (only upstream addresses, the listen address and
/var/cache/nginx are rewritten), and a counting proxy between them shows what reaches the
origin: immutable paths once, the index and POSTs every time, errors never cached, /metrics
never exposed, and no secret in nginx's JSON access log.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from satchel.content.index import parse_index
from satchel.content.manifest import parse_manifest
from satchel.content.objects import decode_object

from harness.e2e import SatchelServer, free_port, publish, run_cli, wait_healthy
from harness.paths import REPO
from harness.proxy import LoopbackProxy
from harness.repo import text_bytes, write_tree

NGINX = Path("/usr/sbin/nginx")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("command"), list) and svc["command"][:2] == ["satchel", "serve"]
    }


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# -- docker-compose.yml -------------------------------------------------------------------------
def test_compose_has_the_whole_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "minio", "minio-bucket", "keygen", "nginx"} <= set(services)
    assert sorted(replicas(compose)) == ["satchel-a", "satchel-b"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert "mc mb --ignore-existing local/satchel" in services["minio-bucket"]["entrypoint"][-1]
    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == {"satchel-a", "satchel-b"}
    for path in ("Dockerfile", "deploy/nginx.conf"):
        assert (REPO / path).is_file(), path


def test_replicas_share_database_bucket_and_key(compose: dict[str, Any]) -> None:
    reps = list(replicas(compose).values())
    commands = [r["command"] for r in reps]
    assert commands[0] == commands[1]
    cmd = commands[0]
    assert option(cmd, "--database-url").startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in option(cmd, "--database-url")
    assert option(cmd, "--storage") == "s3://satchel/objects"  # the bucket minio-bucket makes
    key = option(cmd, "--signing-key")
    assert option(cmd, "--log-format") == "json"
    for rep in reps:
        env = rep["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(env)
        assert env["SATCHEL_DATABASE_URL"] == option(cmd, "--database-url")
        assert "keys:/keys:ro" in rep["volumes"]  # one key file, read-only for the replicas
        assert "/readyz" in " ".join(rep["healthcheck"]["test"])
    keygen = compose["services"]["keygen"]
    assert "keys:/keys" in keygen["volumes"]
    assert f"satchel keygen --out {key}" in keygen["entrypoint"][-1]
    assert f"test -f {key} ||" in keygen["entrypoint"][-1]  # never replaces a key
    # Each replica has a data folder of its own (nothing in it is shared state).
    data = [v for rep in reps for v in rep["volumes"] if v.endswith(":/data")]
    assert len(set(data)) == 2


def test_compose_command_uses_only_options_the_cli_knows(compose: dict[str, Any]) -> None:
    res = run_cli("serve", "--help")
    assert res.code == 0, res.describe()
    for cmd in (r["command"] for r in replicas(compose).values()):
        for opt in (a for a in cmd if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", res.stdout), opt


def test_dockerfile_installs_the_packages_and_serves() -> None:
    text = (REPO / "Dockerfile").read_text("utf-8")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    folders = pyproject["tool"]["setuptools"]["package-dir"].values()
    assert set(folders) >= {"content", "sync", "edge", "server", "clients", "cli"}
    for pkg in folders:  # every package the install needs is in the image
        assert f"COPY {pkg} ./{pkg}" in text
        assert (REPO / pkg).is_dir()
    assert "pip install ." in text
    cmd = json.loads(text.split("CMD", 1)[1].strip())
    assert cmd[:2] == ["satchel", "serve"] and "/data" in cmd


# -- deploy/nginx.conf, for real ----------------------------------------------------------------
def loopback_conf(root: Path, port: int, upstream: int) -> str:
    text = (REPO / "deploy" / "nginx.conf").read_text("utf-8")
    assert "listen 80;" in text and "satchel-a:8000" in text and "satchel-b:8000" in text
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("satchel-a:8000", f"127.0.0.1:{upstream}")
    text = text.replace("satchel-b:8000", f"127.0.0.1:{upstream}")
    text = text.replace("/var/cache/nginx", str(root / "cache"))
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    # As root, workers would otherwise run as nobody and could not use the temp folders.
    return ("user root;\n" if os.geteuid() == 0 else "") + text


class DeployedNginx:
    def __init__(self, root: Path, upstream: int) -> None:
        self.root = root
        self.upstream = upstream
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = root / "nginx.out"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DeployedNginx:
        (self.root / "cache").mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        for _ in range(3):
            self.port = free_port()
            conf.write_text(loopback_conf(self.root, self.port, self.upstream))
            with open(self.out, "ab") as out:
                self.proc = subprocess.Popen(
                    [
                        str(NGINX),
                        "-p",
                        str(self.root),
                        "-c",
                        str(conf),
                        "-g",
                        f"pid {self.root}/nginx.pid; daemon off;",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if wait_healthy(self.proc, self.url, 15):
                return self
            self.stop()
        raise RuntimeError(f"nginx did not start: {self.output()}")

    def output(self) -> str:
        return self.out.read_text("utf-8", errors="replace") if self.out.exists() else ""

    def access(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[tuple[SatchelServer, LoopbackProxy, DeployedNginx]]:
    if not NGINX.exists():
        pytest.skip("nginx not installed (apt-get install nginx)")
    with (
        SatchelServer(tmp_path / "srv") as origin,
        LoopbackProxy("127.0.0.1", origin.port) as counter,
    ):
        nginx = DeployedNginx(tmp_path / "nginx", counter.port).start()
        try:
            yield origin, counter, nginx
        finally:
            nginx.stop()


def test_deploy_nginx_caches_only_immutable_paths(
    deployed: tuple[SatchelServer, LoopbackProxy, DeployedNginx], tmp_path: Path
) -> None:
    origin, counter, nginx = deployed
    token = origin.token("teacher")
    rng = random.Random(4)
    src = write_tree(
        tmp_path / "v1", {"a.html": text_bytes(rng, 40_000), "b.bin": rng.randbytes(9_000)}
    )
    res = publish(origin.url, token, src, "course")
    assert res.code == 0, res.describe()
    entry = parse_index(httpx.get(f"{origin.url}/v1/index/course/en").content)[1].entry(
        "course", "en"
    )
    assert entry is not None
    manifest = entry.manifest
    envelope = decode_object(httpx.get(f"{origin.url}/v1/manifests/{manifest}").content, entry.size)
    chunk = parse_manifest(envelope)[1].distinct_chunks()[0][0]
    absent = "ab" * 32
    counter.reset()

    with httpx.Client(base_url=nginx.url, headers={"Accept-Encoding": "identity"}) as http:
        got = [http.get(f"/v1/chunks/{chunk}") for _ in range(3)]
        ranged = http.get(f"/v1/chunks/{chunk}", headers={"Range": "bytes=10-19"})
        mans = [http.get(f"/v1/manifests/{manifest}") for _ in range(2)]
        index = [http.get("/v1/index/course/en") for _ in range(2)]
        revalidated = http.get(
            "/v1/index/course/en", headers={"If-None-Match": index[0].headers["etag"]}
        )
        packs = [http.post("/v1/pack", json={"chunks": [chunk]}) for _ in range(2)]
        missing = [http.get(f"/v1/chunks/{absent}") for _ in range(2)]
        metrics = http.get("/metrics")
        secret = http.get(
            f"/v1/chunks/{chunk}?token=sat_query_secret",
            headers={"Authorization": f"Bearer {token}"},
        )
        ready = http.get("/readyz")

    assert [r.status_code for r in got] == [200, 200, 200]
    assert [r.headers["x-cache-status"] for r in got] == ["MISS", "HIT", "HIT"]
    assert got[1].content == got[0].content
    assert ranged.status_code == 206 and ranged.content == got[0].content[10:20]
    assert [r.headers["x-cache-status"] for r in mans] == ["MISS", "HIT"]
    assert [r.status_code for r in index] == [200, 200] and revalidated.status_code == 304
    assert "x-cache-status" not in index[1].headers
    assert [r.status_code for r in packs] == [200, 200] and packs[0].content == packs[1].content
    assert [r.status_code for r in missing] == [404, 404]
    assert metrics.status_code == 403
    assert ready.status_code == 200

    seen = Counter(counter.stats().request_lines)
    assert seen[f"GET /v1/chunks/{chunk} HTTP/1.1"] == 1  # 3 GETs and a Range: one fetch
    assert seen[f"GET /v1/manifests/{manifest} HTTP/1.1"] == 1
    assert seen["GET /v1/index/course/en HTTP/1.1"] == 3  # never stored, revalidated at the origin
    assert seen["POST /v1/pack HTTP/1.1"] == 2  # never cached
    assert seen[f"GET /v1/chunks/{absent} HTTP/1.1"] == 2  # errors are not cached
    assert not any("/metrics" in line for line in seen)
    # A token in a query or a header never reaches nginx's log (it logs $uri, no headers).
    log = nginx.output()
    assert "sat_query_secret" not in log and token not in log and "Bearer" not in log
    records = [r for r in nginx.access() if r["path"].startswith("/v1/")]
    assert len(records) == 14  # every /v1/ request above, one line each
    assert {r["cache"] for r in records} >= {"HIT", "MISS", ""}
    assert all(
        set(r) >= {"time", "method", "path", "status", "bytes", "duration_ms"} for r in records
    )
    assert secret.status_code == 200


def test_spoofed_forwarded_for_through_nginx_neither_escapes_nor_misdirects_the_brake(
    tmp_path: Path,
) -> None:
    """Finding 4: clients that send their own X-Forwarded-For through the shipped nginx. The
    brake counts the address nginx saw: 25 guesses under 25 made-up addresses meet 429, and
    guesses in a victim's name do not lock the victim out."""
    if not NGINX.exists():
        pytest.skip("nginx not installed (apt-get install nginx)")
    with SatchelServer(tmp_path / "srv", extra=("--trusted-proxy", "127.0.0.1")) as origin:
        admin = origin.token("admin")
        nginx = DeployedNginx(tmp_path / "nginx", origin.port).start()
        try:
            victim = httpx.Client(
                base_url=nginx.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
            )
            with httpx.Client(base_url=nginx.url) as attacker, victim:
                statuses = []
                for n in range(25):
                    spoofed = "127.0.0.2" if n % 2 else f"198.51.100.{n}"
                    r = attacker.get(
                        "/v1/tokens",
                        headers={
                            "Authorization": f"Bearer sat_guess{n}",
                            "X-Forwarded-For": spoofed,
                        },
                    )
                    statuses.append(r.status_code)
                mine = victim.get("/v1/tokens", headers={"Authorization": f"Bearer {admin}"})
        finally:
            nginx.stop()
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    assert mine.status_code == 200, mine.text  # the victim's own address was never charged
