"""When one syncfs may stand for an fsync of every file (sync/syncfs.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from satchel.sync import syncfs as module
from satchel.sync.syncfs import kernel_reports_errors, mount_type, syncfs, whole_file_system

MOUNTINFO = "\n".join(
    [
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        "40 27 0:50 / /srv/nfs rw,relatime shared:5 - nfs4 host:/export rw",
        r"41 27 8:17 / /media/USB\040STICK rw,relatime master:1 - vfat /dev/sdb1 rw",
        "42 27 0:51 / /srv/fuse rw - fuse.sshfs host: rw",
        "43 27 0:52 / /tmp rw - tmpfs tmpfs rw",
        "44 27 0:53 / /tmp rw - nfs host:/tmp rw",  # mounted over the first: this one counts
        "garbage line without the separator",
    ]
)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/ana/store", "ext4"),
        ("/", "ext4"),
        ("/proc/self", "proc"),
        ("/srv/nfs/store/objects", "nfs4"),
        ("/srv/nfsother", "ext4"),  # a prefix of the name, not a folder above it
        ("/media/USB STICK/satchel", "vfat"),  # \040 in mountinfo is a space
        ("/srv/fuse", "fuse.sshfs"),
        ("/tmp/x", "nfs"),
    ],
)
def test_the_mount_holding_a_path(path: str, kind: str) -> None:
    assert mount_type(MOUNTINFO, path) == kind


def test_no_mount_that_parses_is_none() -> None:
    assert mount_type("nonsense\n", "/") is None


def test_a_backslash_that_is_not_an_octal_escape_stays_as_it_is() -> None:
    line = r"50 27 0:60 / /srv/a\089b rw - ext4 /dev/x rw"
    assert mount_type(line, "/srv/a\\089b/store") == "ext4"


@pytest.mark.parametrize(
    ("release", "ok"),
    [
        ("6.1.0-18-amd64", True),
        ("5.8.0", True),
        ("5.15.133+", True),
        ("5.7.19-generic", False),  # syncfs returned 0 even when write-back failed
        ("4.19.0-arm", False),
        ("", False),
        ("weird", False),
    ],
)
def test_kernels_that_report_write_back_errors(release: str, ok: bool) -> None:
    assert kernel_reports_errors(release) is ok


def test_only_local_file_systems_on_a_kernel_that_reports_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module.sys, "platform", "linux")
    monkeypatch.setattr(module.platform, "release", lambda: "6.1.0")
    monkeypatch.setattr(module, "_mountinfo", lambda: MOUNTINFO)
    monkeypatch.setattr(module.os.path, "realpath", lambda p: p)
    whole_file_system.cache_clear()
    try:
        assert whole_file_system("/home/ana/store") is True
        assert whole_file_system("/media/USB STICK/satchel") is True
        assert whole_file_system("/srv/nfs/store") is False
        assert whole_file_system("/srv/fuse/store") is False
        monkeypatch.setattr(module.platform, "release", lambda: "5.4.0")
        whole_file_system.cache_clear()
        assert whole_file_system("/home/ana/store") is False
    finally:
        whole_file_system.cache_clear()


@pytest.mark.skipif(sys.platform != "linux", reason="syncfs(2) is Linux's")
def test_a_real_syncfs_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    syncfs(os.fspath(tmp_path))  # no error: the file system wrote back
    with pytest.raises(FileNotFoundError):
        syncfs(os.fspath(tmp_path / "gone"))
