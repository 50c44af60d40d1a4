"""USB sync packs: satchel export writes a verifiable folder; satchel import reads it offline."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from satchel.cli import app
from satchel.content.errors import (
    ContentError,
    IntegrityError,
    StoreError,
    TruncatedError,
    UsageError,
)
from satchel.server.repository import Repository
from satchel.sync import usb
from satchel.sync.checkout import checkout
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.pack import read_pack
from satchel.sync.updater import SyncResult, Updater
from satchel.sync.usb import UsbFetcher, export_stick, list_stick, read_have
from typer.testing import CliRunner

from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    make_repository,
    publish,
    sample_files,
    write_tree,
)

SMALL_PACK = 24_000  # forces several pack files for the sample course


def changed_files(files: dict[str, bytes]) -> dict[str, bytes]:
    v2 = dict(files)
    v2["chapters/03-new.html"] = random.Random(7).randbytes(6000)
    v2["README.md"] = files["README.md"][:1000] + b"changed" + files["README.md"][1000:]
    return v2


class World:
    """A publisher, store A synced from it, and helpers; store B is fed only from sticks."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.repo: Repository = make_repository(tmp_path / "srv")
        self.v1 = sample_files(5, scale=2)
        publish(self.repo, write_tree(tmp_path / "src1", self.v1))
        self.a = LocalStore(tmp_path / "a", durable=False)
        Updater(self.a, RepoFetcher(self.repo)).sync("course", "en")
        self.stick = tmp_path / "stick"
        self.v2 = changed_files(self.v1)

    def publish_v2(self) -> None:
        publish(self.repo, write_tree(self.tmp / "src2", self.v2))
        Updater(self.a, RepoFetcher(self.repo)).sync("course", "en")

    def export(self, stick: Path | None = None, **kw: object) -> usb.ExportResult:
        kw.setdefault("max_pack_bytes", SMALL_PACK)
        return export_stick(
            self.a,
            "course",
            "en",
            stick or self.stick,
            durable=False,
            **kw,  # type: ignore[arg-type]
        )


def store(path: Path) -> LocalStore:
    return LocalStore(path, durable=False)


def import_stick(local: LocalStore, stick: Path) -> SyncResult:
    return Updater(local, UsbFetcher(stick)).sync("course", "en")


def assert_checkout(local: LocalStore, files: dict[str, bytes], out: Path) -> None:
    ref = local.ref("course", "en")
    assert ref is not None
    checkout(local.load_manifest(ref.manifest), local.objects, out)
    assert_same_tree(files, out)


def distinct_ids(local: LocalStore, version: int) -> list[str]:
    ref = local.ref("course", "en")
    assert ref is not None
    return [cid for cid, _ in local.load_manifest(ref.versions[version]).distinct_chunks()]


def pack_files(stick: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((stick / "packs").iterdir())}


# -- export and import ---------------------------------------------------------------------
def test_export_then_import_gives_the_same_tree(tmp_path: Path) -> None:
    w = World(tmp_path)
    result = w.export()
    ids = distinct_ids(w.a, 1)
    assert result.objects_written == len(ids) == result.objects_on_stick
    assert json.loads((w.stick / "satchel-usb.json").read_bytes()) == {"format": 2}
    line_index = w.stick / "index" / "course" / "en.json"
    assert line_index.read_bytes() == w.a.last_index("course", "en")
    ref = w.a.ref("course", "en")
    assert ref is not None
    assert [p.name for p in (w.stick / "manifests").iterdir()] == [ref.manifest]
    packs = pack_files(w.stick)
    assert len(packs) > 1 and all(len(b) <= SMALL_PACK for b in packs.values())
    assert sum(len(b) for b in packs.values()) == result.bytes_written
    have = read_have(w.stick)
    assert have.objects == ids and have.packs == sorted(packs)

    w.repo = None  # type: ignore[assignment]  # from here on: only the folder
    b = store(tmp_path / "b")
    res = import_stick(b, w.stick)
    assert (res.version, res.previous_version, res.objects_fetched) == (1, None, len(ids))
    assert_checkout(b, w.v1, tmp_path / "out")
    assert fsck(b).clean
    again = import_stick(b, w.stick)
    assert not again.changed and again.objects_fetched == 0


def test_refresh_writes_only_new_objects_and_imports_v2(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.export()
    b = store(tmp_path / "b")
    import_stick(b, w.stick)
    before = pack_files(w.stick)
    have1 = read_have(w.stick).objects

    w.publish_v2()
    result = w.export()
    new = [cid for cid in distinct_ids(w.a, 2) if cid not in set(distinct_ids(w.a, 1))]
    assert 0 < result.objects_written == len(new)
    after = pack_files(w.stick)
    assert {k: after[k] for k in before} == before  # earlier pack files untouched
    added = sorted(set(after) - set(before))
    assert added == result.pack_files
    assert sum(len(after[k]) for k in added) == result.bytes_written
    assert result.bytes_written < sum(len(v) for v in before.values())
    have2 = read_have(w.stick).objects
    assert have2 == have1 + new
    assert len(list((w.stick / "manifests").iterdir())) == 2

    res = import_stick(b, w.stick)
    assert (res.previous_version, res.version, res.objects_fetched) == (1, 2, len(new))
    assert_checkout(b, w.v2, tmp_path / "out")


def test_since_exports_only_the_difference(tmp_path: Path) -> None:
    w = World(tmp_path)
    b = store(tmp_path / "b")
    w.export()
    import_stick(b, w.stick)
    w.publish_v2()
    small = tmp_path / "small"
    result = w.export(small, since=1)
    v1 = set(distinct_ids(w.a, 1))
    assert read_have(small).objects == [c for c in distinct_ids(w.a, 2) if c not in v1]
    assert result.objects_written == len(read_have(small).objects)
    res = import_stick(b, small)
    assert (res.previous_version, res.version) == (1, 2)
    assert_checkout(b, w.v2, tmp_path / "out")

    empty = store(tmp_path / "c")  # lacks v1: the stick does not carry enough
    with pytest.raises(IntegrityError, match="stick lacks"):
        import_stick(empty, small)
    assert empty.ref("course", "en") is None

    with pytest.raises(UsageError, match="version 9"):
        w.export(tmp_path / "other", since=9)


def test_export_refuses_without_an_index_or_the_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no release index"):
        export_stick(store(tmp_path / "empty"), "course", "en", tmp_path / "s", durable=False)
    w = World(tmp_path)
    with pytest.raises(UsageError, match="not in"):
        export_stick(w.a, "course", "uk", tmp_path / "s", durable=False)


# -- damage --------------------------------------------------------------------------------
def _v1_imported_v2_exported(tmp_path: Path) -> tuple[World, LocalStore, Path]:
    w = World(tmp_path)
    w.export()
    b = store(tmp_path / "b")
    import_stick(b, w.stick)
    w.publish_v2()
    result = w.export(max_pack_bytes=1 << 30)
    assert len(result.pack_files) == 1
    return w, b, w.stick / "packs" / result.pack_files[0]


def _assert_intact(w: World, b: LocalStore, out: Path) -> None:
    ref = b.ref("course", "en")
    assert ref is not None and ref.version == 1
    assert_checkout(b, w.v1, out)
    assert fsck(b).clean


@pytest.mark.parametrize("cut", [0, 5, 8, 30, 100, 0.5, -37, -36, -1])
def test_a_truncated_pack_file_is_refused_and_the_store_intact(tmp_path: Path, cut: float) -> None:
    w, b, pack = _v1_imported_v2_exported(tmp_path)
    data = pack.read_bytes()
    at = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    pack.write_bytes(data[:at])
    with pytest.raises((ContentError, TruncatedError)):
        import_stick(b, w.stick)
    _assert_intact(w, b, tmp_path / "out")


@pytest.mark.parametrize("where", [0, 9, 40, 41, 300, 0.5, -40, -5, -1])
def test_a_flipped_byte_in_a_pack_file_is_refused(tmp_path: Path, where: float) -> None:
    w, b, pack = _v1_imported_v2_exported(tmp_path)
    data = bytearray(pack.read_bytes())
    at = int(len(data) * where) if isinstance(where, float) else where % len(data)
    data[at] ^= 0x10
    pack.write_bytes(bytes(data))
    with pytest.raises((ContentError, TruncatedError)):
        import_stick(b, w.stick)
    _assert_intact(w, b, tmp_path / "out")


def test_a_tampered_index_or_manifest_is_refused(tmp_path: Path) -> None:
    w, b, _pack = _v1_imported_v2_exported(tmp_path)
    index = w.stick / "index" / "course" / "en.json"
    good = index.read_bytes()
    index.write_bytes(good.replace(b'"version":2', b'"version":3', 1))
    assert index.read_bytes() != good
    with pytest.raises(ContentError):
        import_stick(b, w.stick)
    _assert_intact(w, b, tmp_path / "out1")

    index.write_bytes(good)
    ref = w.a.ref("course", "en")
    assert ref is not None
    manifest = w.stick / "manifests" / ref.manifest
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0x01
    manifest.write_bytes(bytes(data))
    with pytest.raises(ContentError):
        import_stick(b, w.stick)
    _assert_intact(w, b, tmp_path / "out2")

    fresh = store(tmp_path / "fresh")
    with pytest.raises(ContentError):
        import_stick(fresh, w.stick)
    assert fresh.ref("course", "en") is None


def test_a_stick_pulled_mid_write_continues_on_the_next_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(tmp_path)
    b = store(tmp_path / "b")
    w.export()
    import_stick(b, w.stick)
    w.publish_v2()
    old_index = (w.stick / "index" / "course" / "en.json").read_bytes()

    calls = [0]
    real_get = w.a.objects.get

    def failing_get(cid: str) -> bytes:
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(5, "Input/output error")
        return real_get(cid)

    monkeypatch.setattr(w.a.objects, "get", failing_get)
    with pytest.raises(OSError):
        w.export(max_pack_bytes=2500)  # several packs: the first ones complete
    monkeypatch.undo()
    # What a pulled stick leaves: a temp pack and a complete pack the have-list lacks.
    (w.stick / "packs" / ".tmp-000099.pack.part").write_bytes(b"SATPACK\x01half")
    have = read_have(w.stick)
    orphan = w.stick / "packs" / f"{int(have.packs[-1][:6]) + 1:06d}.pack"
    orphan.write_bytes(b"SATPACK\x01" + bytes(36))
    assert (w.stick / "index" / "course" / "en.json").read_bytes() == old_index  # still names v1
    listed = set(have.objects)
    assert all(cid in listed for cid in distinct_ids(w.a, 1))
    assert import_stick(b, w.stick).version == 1  # the stick as it was still imports

    result = w.export()
    assert not any(p.name.startswith(".tmp-") for p in (w.stick / "packs").iterdir())
    v2 = distinct_ids(w.a, 2)
    assert result.objects_written == len([c for c in v2 if c not in listed])
    assert set(read_have(w.stick).objects) >= set(v2)
    assert len(read_have(w.stick).objects) == len(set(read_have(w.stick).objects))
    res = import_stick(b, w.stick)
    assert (res.previous_version, res.version) == (1, 2)
    assert_checkout(b, w.v2, tmp_path / "out")
    c = store(tmp_path / "c")
    import_stick(c, w.stick)
    assert_checkout(c, w.v2, tmp_path / "out_c")


def test_list_reads_the_stick_without_a_store(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.export()
    w.publish_v2()
    w.export()
    listing = list_stick(w.stick)
    assert [(ln.entry.bundle, ln.entry.version) for ln in listing.lines] == [("course", 2)]
    assert listing.lines[0].objects_on_stick == listing.lines[0].objects
    assert listing.objects == len(read_have(w.stick).objects)
    assert listing.pack_bytes == sum(len(b) for b in pack_files(w.stick).values())


# -- the commands --------------------------------------------------------------------------
def test_cli_export_import_and_list(tmp_path: Path) -> None:
    w = World(tmp_path)
    runner = CliRunner()
    stick, a, b = str(w.stick), str(w.a.root), str(tmp_path / "b")

    r = runner.invoke(app, ["export", "--store", a, "--bundle", "course", "--to", stick])
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "wrote" in r.stderr and "bytes" in r.stderr

    r = runner.invoke(app, ["import", "--list", stick])
    assert r.exit_code == 0, r.stderr
    assert "course/en version 1" in r.stdout and "pack files" in r.stdout

    r = runner.invoke(app, ["import", stick, "--store", b])
    assert r.exit_code == 0, r.stderr
    assert "trusting publisher key" in r.stderr and "course/en: version none -> 1" in r.stderr
    assert_checkout(store(tmp_path / "b"), w.v1, tmp_path / "out")

    r = runner.invoke(app, ["import", stick, "--store", b, "--bundle", "course"])
    assert r.exit_code == 0 and "version 1 is current" in r.stderr

    w.publish_v2()
    r = runner.invoke(app, ["export", "--store", a, "--bundle", "course", "--to", stick])
    assert r.exit_code == 0, r.stderr
    ref = w.a.ref("course", "en")
    assert ref is not None
    (w.stick / "manifests" / ref.manifest).write_bytes(b"{}")
    r = runner.invoke(app, ["import", stick, "--store", b])
    assert r.exit_code == 3
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "nothing stored was changed: the current version is intact" in r.stderr
    assert_checkout(store(tmp_path / "b"), w.v1, tmp_path / "out2")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = str(tmp_path / "empty")
    r = runner.invoke(
        app, ["export", "--store", empty, "--bundle", "course", "--to", str(tmp_path / "s")]
    )
    assert r.exit_code == 2 and "not a Satchel store" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "empty").exists()  # export never makes a store

    r = runner.invoke(app, ["import", str(tmp_path), "--store", empty])
    assert r.exit_code == 2 and "not a Satchel USB folder" in r.stderr

    r = runner.invoke(app, ["import", str(tmp_path)])
    assert r.exit_code == 2 and "--store" in r.stderr

    w = World(tmp_path)
    since = ["--since", "9", "--to", str(w.stick)]
    r = runner.invoke(app, ["export", "--store", str(w.a.root), "--bundle", "course", *since])
    assert r.exit_code == 2 and "version 9" in r.stderr

    w.export()
    r = runner.invoke(
        app, ["import", str(w.stick), "--store", str(tmp_path / "b"), "--trust", "ab" * 32]
    )
    assert r.exit_code == 3 and "not the trusted key" in r.stderr


# -- issue 12, finding 6b: a stick is read as regular files only, each bounded ------------------
# `satchel import` (or `import --list`) in a subprocess that reports its exit code and peak
# memory: a FIFO would hang it and a link to /dev/zero run it out of memory if either were read.
IMPORTER = """
import json, resource, sys
from satchel.cli import main
report, sys.argv = sys.argv[1], ["satchel", *sys.argv[2:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
with open(report, "w") as f:
    json.dump({"code": code, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}, f)
"""


def _import_cli(tmp: Path, *args: str) -> tuple[int, int, str]:
    report = tmp / f"report-{len(list(tmp.glob('report-*')))}.json"
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTER, str(report), *args],
        capture_output=True,
        text=True,
        timeout=60,  # a FIFO read would block forever
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    done = json.loads(report.read_text())
    return int(done["code"]), int(done["peak"]), proc.stderr


def _plant(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "zero-link":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # "300mb": sparse, so the test itself stays cheap
        with open(path, "wb") as f:
            f.truncate(300 * 1000 * 1000)


@pytest.mark.parametrize(
    ("target", "kind", "words"),
    [
        ("index", "zero-link", "index of course/en on the stick is a link, not a regular file"),
        ("index", "fifo", "index of course/en on the stick is a pipe, not a regular file"),
        ("index", "300mb", "index of course/en on the stick is 300,000,000 bytes, over the"),
        ("have.json", "zero-link", "have.json on the stick is a link"),
        ("satchel-usb.json", "fifo", "satchel-usb.json on the stick is a pipe"),
        ("manifest", "fifo", "on the stick is a pipe"),
        ("manifest", "300mb", "bytes, over the 67,108,864-byte limit"),
        ("pack", "fifo", "on the stick is a pipe"),
        ("pack", "zero-link", "on the stick is a link"),
    ],
)
def test_a_stick_is_read_as_regular_files_only_each_bounded(
    tmp_path: Path, target: str, kind: str, words: str
) -> None:
    """The attacks of issue 12, finding 6: on a stick, an index as a link to /dev/zero ran
    import out of memory, as a FIFO hung it, and a 300 MB one was read whole before its 8 MiB
    check. Each is refused unread, in one line, and the store keeps its version."""
    w, b, pack = _v1_imported_v2_exported(tmp_path)
    ok_code, baseline, _ = _import_cli(tmp_path, "import", "--list", str(w.stick))
    assert ok_code == 0
    ref = w.a.ref("course", "en")
    assert ref is not None
    where = {
        "manifest": w.stick / "manifests" / ref.manifest,
        "pack": pack,
        "index": w.stick / "index" / "course" / "en.json",
    }
    _plant(where.get(target, w.stick / target), kind)
    code, peak, stderr = _import_cli(tmp_path, "import", str(w.stick), "--store", str(b.root))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and words in lines[0], stderr
    assert "refused unread" in lines[0], stderr
    assert peak < baseline + 48 * 1024 * 1024, (peak, baseline)
    _assert_intact(w, b, tmp_path / "out")
    if target != "pack":  # the listing reads no pack file
        listed, _, stderr = _import_cli(tmp_path, "import", "--list", str(w.stick))
        assert listed in (1, 2, 3) and words in stderr, stderr


def test_pack_files_are_walked_with_the_pack_reader_reading_heads_only(tmp_path: Path) -> None:
    """USB pack reading goes through sync/pack.py's PackReader (heads only, objects skipped):
    every object is found where the pack says, and the reader reads little more than heads."""
    w = World(tmp_path)
    result = w.export()
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("needs Linux's /proc/self/io to count the bytes read")

    def bytes_read() -> int:  # rchar: bytes this process got from read(2) and friends
        return int(io_stats.read_text().split("rchar:")[1].split()[0])

    total = sum((w.stick / "packs" / name).stat().st_size for name in result.pack_files)
    found: dict[str, usb._Loc] = {}
    before = bytes_read()
    for name in result.pack_files:
        found.update(usb.index_pack_file(w.stick / "packs" / name))
    read = bytes_read() - before
    assert sorted(found) == sorted(read_have(w.stick).objects)
    heads = 8 * len(result.pack_files) + 36 * (len(found) + len(result.pack_files))
    assert read < heads + 4096 < total // 4, (read, heads, total)
    for name in result.pack_files:
        data = (w.stick / "packs" / name).read_bytes()
        for frame in read_pack([data]):
            loc = found[frame.chunk_id]
            assert data[loc.offset : loc.offset + loc.length] == frame.obj
