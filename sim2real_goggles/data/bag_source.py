"""Bags opened for reading whole recordings, damaged ones included.

:func:`open_bag_source` reads a bag folder or storage file with ``rosbags``. When rosbags
cannot open it (a recording cut short: an MCAP file without its footer, a sqlite3 file whose
header declares more pages than it holds), the storage files are salvaged record by record up to
the damage: MCAP records are scanned in file order, chunks unpacked, until the first unreadable
one; a sqlite3 file is read from a copy with its page count corrected. ``BagSource.damage`` says
what stopped a scan, and ``BagSource.declared`` holds the message counts the bag declares
(metadata.yaml, or the MCAP summary through rosbags), so a caller can count lost messages.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim2real_goggles.data.bags import BagError, open_reader


@dataclass
class BagSource:
    """An open bag, read through rosbags or salvaged record by record."""

    path: Path
    topics: dict[str, str]
    """topic -> message type"""
    declared: dict[str, int]
    """message counts per topic the bag declares (metadata.yaml, MCAP summary); may be empty"""
    messages: Callable[[Collection[str]], Iterator[tuple[str, int, bytes]]]
    """(topic, log time ns, CDR bytes) of the given topics, in recorded order"""
    deserialize: Callable[[bytes, str], Any]
    close: Callable[[], None]
    salvaged_because: str | None = None
    """why the regular reader could not open the bag, when it was salvaged"""
    damage: list[str] = field(default_factory=list)
    """what stopped a salvage scan (filled while reading)"""


def _reader_source(path: Path) -> BagSource:
    reader = open_reader(path)
    topics: dict[str, str] = {}
    declared: dict[str, int] = {}
    for conn in reader.connections:
        topics[conn.topic] = conn.msgtype
        declared[conn.topic] = declared.get(conn.topic, 0) + int(conn.msgcount or 0)

    def messages(wanted: Collection[str]) -> Iterator[tuple[str, int, bytes]]:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield conn.topic, timestamp, raw

    return BagSource(path, topics, declared, messages, reader.deserialize, reader.close)


def _metadata_counts(path: Path) -> dict[str, int]:
    """Message counts per topic from a bag folder's metadata.yaml ({} when unreadable)."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        info = (yaml.safe_load(meta.read_text()) or {})["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"]) for t in info["topics_with_message_count"]}
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return {}


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))


class _Damage(Exception):
    """A storage file cannot be read past this point."""


_MCAP_MAGIC = b"\x89MCAP0\r\n"
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


def _mcap_fields(content: bytes, offset: int, spec: str) -> tuple[list[Any], int]:
    """Decode MCAP fields: H/I/Q integers, s (string) and b (bytes, u32 length)."""
    values: list[Any] = []
    for kind in spec:
        if kind in "HIQ":
            st = {"H": _U16, "I": _U32, "Q": _U64}[kind]
            values.append(st.unpack_from(content, offset)[0])
            offset += st.size
        else:
            (n,) = _U32.unpack_from(content, offset)
            raw = content[offset + 4 : offset + 4 + n]
            if len(raw) != n:
                raise _Damage(f"field runs past its record at offset {offset}")
            values.append(raw.decode() if kind == "s" else raw)
            offset += 4 + n
    return values, offset


def _mcap_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of every data record of an MCAP file in file order, chunks unpacked;
    raises :class:`_Damage` where the file stops being readable."""
    from rosbags.rosbag2.storage_mcap import decompress

    def records(data: bytes) -> Iterator[tuple[int, bytes]]:
        pos = 0
        while pos < len(data):
            if pos + 9 > len(data):
                raise _Damage("chunk ends inside a record header")
            op, (length,) = data[pos], _U64.unpack_from(data, pos + 1)
            if pos + 9 + length > len(data):
                raise _Damage("record runs past the end of its chunk")
            yield op, data[pos + 9 : pos + 9 + length]
            pos += 9 + length

    file_size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(8) != _MCAP_MAGIC:
            raise _Damage("not an MCAP file (bad magic)")
        while True:
            offset = f.tell()
            head = f.read(9)
            if not head:
                raise _Damage(f"file ends at byte {offset} without the MCAP footer (recording cut short)")
            if len(head) < 9:
                raise _Damage(f"truncated record header at byte {offset}")
            op, (length,) = head[0], _U64.unpack(head[1:])
            if offset + 9 + length > file_size:  # cut short, or a garbage length: never read past the file
                raise _Damage(f"truncated record at byte {offset} ({file_size - offset - 9} of {length} bytes)")
            content = f.read(length)
            if op == 0x0F:  # DataEnd: only the summary (copies of schemas and channels) follows
                return
            if op != 0x06:
                yield op, content
                continue
            try:  # Chunk: start, end, uncompressed size, crc, compression, records
                (_, _, size, crc, compression, body), _ = _mcap_fields(content, 0, "QQQIsQ")
                data = content[len(content) - body :] if body else b""
                yield from records(decompress(data, compression, size, crc))
            except _Damage as exc:
                raise _Damage(f"chunk at byte {offset}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - a bad chunk (checksum, codec, bounds) ends the scan
                raise _Damage(f"chunk at byte {offset} does not decode: {exc}") from exc


def _mcap_source(files: list[Path], declared: dict[str, int], deserialize: Callable[[bytes, str], Any]) -> BagSource:
    """Salvage MCAP files: scan once for schemas and channels, then again for messages."""
    schemas: dict[tuple[int, int], str] = {}
    channels: dict[tuple[int, int], tuple[str, str]] = {}  # (file, channel id) -> (topic, type)
    for i, file in enumerate(files):
        try:
            for op, content in _mcap_records(file):
                if op == 0x03:
                    (sid, name), _ = _mcap_fields(content, 0, "Hs")
                    schemas[i, sid] = name
                elif op == 0x04:
                    (cid, sid, topic), _ = _mcap_fields(content, 0, "HHs")
                    channels[i, cid] = (topic, schemas.get((i, sid), ""))
        except (_Damage, struct.error):
            pass  # the message pass meets the same damage and records it
    damage: list[str] = []

    def messages(wanted: Collection[str]) -> Iterator[tuple[str, int, bytes]]:
        for i, file in enumerate(files):
            try:
                for op, content in _mcap_records(file):
                    if op == 0x05:
                        (cid, _, log_time, _), start = _mcap_fields(content, 0, "HIQQ")
                        topic = channels.get((i, cid), ("", ""))[0]
                        if topic in wanted:
                            yield topic, log_time, content[start:]
            except (_Damage, struct.error) as exc:
                damage.append(f"{file.name}: {exc}")

    topics = {topic: msgtype for topic, msgtype in channels.values()}
    return BagSource(files[0], topics, declared, messages, deserialize, lambda: None, damage=damage)


def _sqlite_source(
    files: list[Path], declared: dict[str, int], deserialize: Callable[[bytes, str], Any]
) -> BagSource | None:
    """Salvage sqlite3 files: a truncated file declares more pages than it holds, which SQLite
    calls malformed; a copy with the page count corrected reads up to the missing pages."""
    tmp = tempfile.TemporaryDirectory(prefix="goggles-salvage-")
    dbs: list[tuple[Path, sqlite3.Connection, dict[int, str]]] = []
    topics: dict[str, str] = {}
    for file in files:
        with file.open("rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            continue
        copy = Path(tmp.name) / file.name
        shutil.copyfile(file, copy)
        (page_size,) = struct.unpack_from(">H", header, 16)
        pages = copy.stat().st_size // (65536 if page_size == 1 else page_size)
        with copy.open("r+b") as f:
            f.seek(28)
            f.write(struct.pack(">I", pages))
        try:
            db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            rows = db.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.DatabaseError:
            continue
        ids = {int(tid): str(name) for tid, name, _ in rows}
        topics.update({str(name): str(msgtype) for _, name, msgtype in rows})
        dbs.append((file, db, ids))
    if not dbs:
        tmp.cleanup()
        return None

    def close() -> None:
        for _, db, _ in dbs:
            db.close()
        tmp.cleanup()

    damage: list[str] = []

    def messages(wanted: Collection[str]) -> Iterator[tuple[str, int, bytes]]:
        for file, db, ids in dbs:
            try:  # rowid order is recording order; the timestamp index may be the damaged part
                for topic_id, timestamp, data in db.execute("SELECT topic_id, timestamp, data FROM messages"):
                    if ids.get(int(topic_id)) in wanted:
                        yield ids[int(topic_id)], int(timestamp), bytes(data)
            except sqlite3.DatabaseError as exc:
                damage.append(f"{file.name}: {exc}")

    return BagSource(files[0], topics, declared, messages, deserialize, close, damage=damage)


def open_bag_source(path: Path) -> BagSource:
    if not path.exists():
        raise BagError(f"{path}: no such bag (a folder with metadata.yaml, or a .mcap/.db3 file)")
    try:
        return _reader_source(path)
    except BagError as error:
        from sim2real_goggles.data.bag_writer import deserialize

        files = _storage_files(path)
        declared = _metadata_counts(path) if path.is_dir() else {}
        mcaps = [f for f in files if f.suffix == ".mcap"]
        source = (
            _mcap_source(mcaps, declared, deserialize)
            if mcaps
            else _sqlite_source([f for f in files if f.suffix == ".db3"], declared, deserialize)
        )
        if source is None or not source.topics:
            raise error from None
        source.path = path
        source.salvaged_because = str(error).removeprefix(f"{path}: ")
        return source


__all__ = ["BagSource", "open_bag_source"]
