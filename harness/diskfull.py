"""A disk that really fills up: a small tmpfs mounted in a private mount namespace.

``unshare -rm`` gives a process its own mount namespace (as root, or as any user where user
namespaces are enabled), so the tmpfs is invisible to the rest of the machine and vanishes
with the process: no cleanup, nothing left mounted if a test dies. The kernel then returns a
real ENOSPC, through every layer (Python, SQLite, the store's temp-file-and-rename), which an
injected error in one wrapper would not exercise.

Run as a script inside the namespace it is the client side of the sync scenario: mount, sync,
wait for the test to publish a bigger version, sync again into the full disk, then report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UNSHARE = shutil.which("unshare")


def tmpfs_unavailable() -> str | None:
    """Why a private tmpfs cannot be mounted here, or None when it can."""
    if UNSHARE is None:
        return "unshare (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as mnt:
        probe = subprocess.run(
            [UNSHARE, "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
            capture_output=True,
            text=True,
            timeout=30,
        )
    if probe.returncode != 0:
        return f"cannot mount a private tmpfs: {probe.stderr.strip()[:200]}"
    return None


def in_small_tmpfs(mount: Path, size: str, command: list[str]) -> list[str]:
    """``command`` run with a ``size`` tmpfs mounted on ``mount`` (in its own namespace)."""
    assert UNSHARE is not None
    script = 'mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@"'
    return [UNSHARE, "-rm", "sh", "-c", script, "sh", size, str(mount), *command]


def _run(args: list[str]) -> dict[str, object]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return {"code": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def _driver(satchel: str, server: str, mount: Path, out: Path) -> None:
    store = mount / "store"
    sync = [satchel, "sync", "--server", server, "--bundle", "course", "--store", str(store)]
    sync += ["--json", "--retries", "0"]

    def report(step: str, result: dict[str, object]) -> None:
        print(json.dumps({"step": step, **result}), flush=True)

    # The first version fits the tiny disk, but not with the default 50 MB reserve.
    report("first", _run([*sync, "--reserve", "0"]))
    sys.stdin.readline()  # the test publishes the bigger version, then says go
    # The free-space check refuses the bigger version before storing anything...
    report("precheck", _run(sync))
    # ...and with the check off, the disk really fills during the sync.
    report("full", _run([*sync, "--reserve", "off"]))
    report(
        "checkout",
        _run([satchel, "checkout", "--store", str(store), "--bundle", "course", "--to", str(out)]),
    )
    report("fsck", _run([satchel, "fsck", "--store", str(store)]))
    usage = shutil.disk_usage(mount)
    report("disk", {"code": 0, "stdout": f"{usage.free}", "stderr": ""})


if __name__ == "__main__":
    _driver(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
