"""The offline laptop's paths, measured on the real corpus: USB packs and a classroom relay.

For each corpus pair (old, new) this starts a real ``satchel serve``, publishes the old
version, and syncs a relay's store through a counting loopback proxy. Then:

* **USB**: ``satchel export`` of the old version to an empty stick (bytes written), the
  stick refreshed in place with the new version (bytes added), and the same new version
  exported with ``--since OLD`` to a fresh stick (an update-only stick). Baseline in the
  same run: ``tar --sort=name | zstd -19`` of the tree.
* **Relay**: ``satchel share`` on the relay's store; N laptops sync the old version from the
  relay, then the new one after the relay updates. The origin's bytes are counted once per
  version (through its proxy), the relay's bytes per laptop (through its own proxy).

Run from the repository root:  python bench/offline.py [--laptops N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.bench import corpus, table, tar_zstd_size  # noqa: E402
from harness.e2e import (  # noqa: E402
    SatchelRelay,
    SatchelServer,
    run_cli,
    sync_json,
    tree_differences,
)
from harness.proxy import LoopbackProxy  # noqa: E402

PAIRS = [
    ("intro-stats", "intro-stats/v2", "intro-stats/v3"),
    ("shell", "shell-novice/v1", "shell-novice/v2"),
]


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def must(res: object) -> str:
    code = getattr(res, "code", 1)
    if code != 0:
        raise SystemExit(f"command failed: {res.describe()}")  # type: ignore[attr-defined]
    return str(getattr(res, "stdout", ""))


def measure(
    name: str, old: Path, new: Path, laptops: int, work: Path
) -> tuple[list[object], list[object]]:
    with SatchelServer(work / "origin") as server:
        token = server.token("teacher")
        must(run_cli("publish", old, "--server", server.url, "--token", token, "--bundle", name))
        relay_store = work / "relay"
        with LoopbackProxy("127.0.0.1", server.port) as to_origin:
            sync_json(to_origin.url, name, relay_store)
            origin_old = to_origin.stats().bytes_down
            # USB: a first stick, then refreshed in place with the new version.
            stick = work / "stick"
            must(run_cli("export", "--store", relay_store, "--bundle", name, "--to", stick))
            usb_first = folder_bytes(stick)
            with (
                SatchelRelay(relay_store) as relay,
                LoopbackProxy("127.0.0.1", relay.port) as to_relay,
            ):
                for i in range(laptops):
                    sync_json(to_relay.url, name, work / f"laptop{i}")
                relay_old = to_relay.stats().bytes_down
                must(
                    run_cli(
                        "publish", new, "--server", server.url, "--token", token, "--bundle", name
                    )
                )
                to_origin.reset()
                sync_json(to_origin.url, name, relay_store)
                origin_new = to_origin.stats().bytes_down
                to_relay.reset()
                for i in range(laptops):
                    got = sync_json(to_relay.url, name, work / f"laptop{i}")
                    assert got["version"] == 2, got
                relay_new = to_relay.stats().bytes_down
                origin_after = to_origin.stats().bytes_down
            out = work / f"check-{name}"  # one folder per line: checkout replaces only its own
            must(run_cli("checkout", "--store", work / "laptop0", "--bundle", name, "--to", out))
            problems = tree_differences(new, out)
            if problems:
                raise SystemExit(f"{name}: laptop checkout differs: {problems[:3]}")
            must(run_cli("export", "--store", relay_store, "--bundle", name, "--to", stick))
            usb_refreshed = folder_bytes(stick)
            since = work / "stick-since"
            must(
                run_cli(
                    "export",
                    "--store",
                    relay_store,
                    "--bundle",
                    name,
                    "--since",
                    "1",
                    "--to",
                    since,
                )
            )
            usb_since = folder_bytes(since)
            fresh = work / "fresh"
            must(run_cli("import", stick, "--store", fresh))
    usb = [
        name,
        tar_zstd_size(old),
        usb_first,
        usb_refreshed - usb_first,
        usb_since,
    ]
    relay = [
        name,
        laptops,
        origin_old,
        relay_old,
        origin_new,
        relay_new,
        origin_after - origin_new,
    ]
    return usb, relay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laptops", type=int, default=3)
    args = parser.parse_args()
    usb_rows, relay_rows = [], []
    for name, old, new in PAIRS:
        work = Path(tempfile.mkdtemp(prefix="satchel-offline-"))
        try:
            usb, relay = measure(name, corpus(old), corpus(new), args.laptops, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        usb_rows.append(usb)
        relay_rows.append(relay)
        print(f"{name}: done", file=sys.stderr)
    print("USB sticks (bytes on the stick; old and new: the corpus pair)\n")
    print(
        table(
            [
                "course",
                "tar|zstd -19 of old",
                "stick with old",
                "refresh to new adds",
                "new --since old",
            ],
            usb_rows,
        )
    )
    print(f"\nClassroom relay: {args.laptops} laptops sync from one relay (bytes on the wire)\n")
    print(
        table(
            [
                "course",
                "laptops",
                "origin → relay, old",
                "relay → laptops, old",
                "origin → relay, old→new",
                "relay → laptops, old→new",
                "origin bytes while laptops synced",
            ],
            relay_rows,
        )
    )


if __name__ == "__main__":
    main()
