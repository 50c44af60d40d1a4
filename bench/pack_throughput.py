"""Pack streaming throughput of one `satchel serve` process on loopback, in Gbit/s.

A first sync's pack (every object of a bundle in one ``POST /v1/pack``) is the largest
thing a server streams. This publishes a bundle (``../shared/corpus/intro-stats/v1``, 37 MB
of text and JPEGs, or ``--synthetic`` incompressible files), then asks for the whole pack
``--rounds`` times and times each from the request to the last byte.

Two readers, so the client is not what is measured:

* ``raw``: a plain socket reading into one reused buffer (a few percent of a core at these
  rates), with the pack's ``Content-Length`` checked at the end;
* ``httpx``: the client library ``satchel sync`` uses (``iter_raw``), for what a real client
  on a fast LAN would see.

The server's CPU seconds for each round (all its threads, from /proc) give a second figure
that a busy shared machine disturbs less than wall time: bits streamed per second of server
CPU, i.e. what one server process would do with one core to itself. Target: at least
1 Gbit/s for one server process. Run from the repository root:  python bench/pack_throughput.py
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from satchel.content.index import parse_index  # noqa: E402
from satchel.content.manifest import parse_manifest  # noqa: E402
from satchel.content.objects import decode_object  # noqa: E402
from satchel.sync.plan import encode_want  # noqa: E402

from harness.bench import CORPUS, table  # noqa: E402
from harness.e2e import SatchelServer, run_cli  # noqa: E402

BUNDLE = "big"


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` in ns resolution (/proc/PID/task/*/schedstat).

    /proc/PID/stat counts in clock ticks (10 ms), too coarse for a 50 ms round.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended in between
    return total / 1e9


def synthetic(root: Path, megabytes: int) -> Path:
    rng = random.Random(99)
    for i in range(megabytes):
        path = root / f"media/{i // 50:02d}/file-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(1_000_000))
    return root


def pack_request(url: str) -> tuple[bytes, int]:
    """The JSON body asking for every object of the bundle, and the number of objects."""
    raw = httpx.get(f"{url}/v1/index/{BUNDLE}/en", timeout=30).content
    entry = parse_index(raw)[1].entry(BUNDLE, "en")
    assert entry is not None
    obj = httpx.get(f"{url}/v1/manifests/{entry.manifest}", timeout=30).content
    manifest = parse_manifest(decode_object(obj, entry.size))[1]
    distinct = manifest.distinct_chunks()
    want = encode_want(distinct, {cid for cid, _ in distinct})
    body = {"manifest": entry.manifest, "want": base64.b64encode(want).decode("ascii")}
    return json.dumps(body).encode(), len(distinct)


def raw_round(port: int, body: bytes) -> tuple[int, float]:
    """POST the pack request on a plain socket; (body bytes, seconds to the last byte)."""
    head = (
        f"POST /v1/pack HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    buf = bytearray(4 * 1024 * 1024)
    view = memoryview(buf)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        first = b""
        while b"\r\n\r\n" not in first:
            got = sock.recv(65536)
            if not got:
                raise RuntimeError("connection closed before the response head")
            first += got
        header, _, rest = first.partition(b"\r\n\r\n")
        status = header.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise RuntimeError(f"pack request answered {status.decode(errors='replace')}")
        length = None
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        total = len(rest)
        while True:
            n = sock.recv_into(view)
            if n == 0:
                break
            total += n
    seconds = time.perf_counter() - start
    if length is not None and total != length:
        raise RuntimeError(f"pack was {total:,} bytes, Content-Length said {length:,}")
    return total, seconds


def httpx_round(url: str, body: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    total = 0
    with (
        httpx.Client(timeout=300, headers={"Accept-Encoding": "identity"}) as http,
        http.stream(
            "POST",
            f"{url}/v1/pack",
            content=body,
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        resp.raise_for_status()
        for piece in resp.iter_raw():
            total += len(piece)
    return total, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--synthetic", type=int, metavar="MB", help="N MB of random files instead")
    ap.add_argument("--readers", default="raw,httpx")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="satchel-pack-"))
    try:
        src = CORPUS / "intro-stats" / "v1"
        label = "intro-stats v1 (first sync)"
        if args.synthetic or not src.is_dir():
            mb = args.synthetic or 64
            src, label = synthetic(work / "tree", mb), f"synthetic {mb} MB random (first sync)"
        with SatchelServer(work / "srv", extra=("--no-access-log",)) as server:
            token = server.token("teacher")
            res = run_cli(
                "publish", src, "--server", server.url, "--token", token, "--bundle", BUNDLE,
                timeout=900,
            )  # fmt: skip
            if res.code != 0:
                raise SystemExit(f"publish failed: {res.describe()}")
            body, objects = pack_request(server.url)
            assert server.proc is not None
            pid = server.proc.pid
            rows: list[list[object]] = []
            results = []
            for reader in [r.strip() for r in args.readers.split(",") if r.strip()]:
                raw_round(server.port, body)  # warm the page cache and the server
                for i in range(args.rounds):
                    cpu0 = cpu_seconds(pid)
                    if reader == "raw":
                        size, seconds = raw_round(server.port, body)
                    else:
                        size, seconds = httpx_round(server.url, body)
                    cpu = cpu_seconds(pid) - cpu0
                    gbps = size * 8 / seconds / 1e9
                    per_cpu = size * 8 / max(cpu, 1e-9) / 1e9
                    results.append(
                        {"reader": reader, "bytes": size, "seconds": seconds, "gbit_s": gbps,
                         "server_cpu_s": cpu, "gbit_per_server_cpu_s": per_cpu}
                    )  # fmt: skip
                    rows.append(
                        [reader, i + 1, objects, size, f"{seconds:.3f}", f"{gbps:.2f}",
                         f"{cpu:.3f}", f"{per_cpu:.2f}"]
                    )  # fmt: skip
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{label}; one server process; {os.cpu_count()} CPUs, load average {load}\n")
        print(
            table(
                [
                    "reader",
                    "round",
                    "objects",
                    "bytes",
                    "seconds",
                    "Gbit/s",
                    "server CPU s",
                    "Gbit per server CPU s",
                ],
                rows,
            )
        )
        for reader in sorted({r["reader"] for r in results}):
            mine = [r for r in results if r["reader"] == reader]
            wall = sorted(r["gbit_s"] for r in mine)
            cpu = sorted(r["gbit_per_server_cpu_s"] for r in mine)
            print(
                f"\n{reader}: median {wall[len(wall) // 2]:.2f} Gbit/s (best {wall[-1]:.2f});"
                f" per second of server CPU {cpu[len(cpu) // 2]:.2f} Gbit (target >= 1 Gbit/s)"
            )
        if args.json:
            print(json.dumps(results))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
