"""Streaming checks that a database dump is complete, one per dump format.

A checker receives the dump chunk by chunk while it streams to its destination and keeps
only a header, a tail or parser state, so dumps of any size are checked in constant memory.
``finish`` raises ``DumpIncomplete`` with the reason when the artefact is empty, carries only
a header, or stops before the format's own end marker.

    pg_dump --format=custom    "PGDMP" header, table of contents, and every data block it lists
    pg_dumpall, mysqldump      the tool's header and its completion comment at the end
    Redis RDB                  "REDIS" magic, the EOF opcode and a matching CRC-64 checksum
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Literal, Protocol

DumpFormat = Literal["pg_dump_custom", "pg_dumpall_sql", "mysqldump_sql", "redis_rdb"]

# How much of the start and of the end of a text dump is kept for the checks.
_HEADER_BYTES = 256
_TAIL_BYTES = 4096
# The last lines each tool writes after everything else, checked byte for byte up to the end.
_PG_DUMPALL_TRAILER = re.compile(rb"\n--\n-- PostgreSQL database cluster dump complete\n--\n\n\Z")
_MYSQLDUMP_TRAILER = re.compile(rb"\n-- Dump completed( on \d{4}-\d{2}-\d{2} +\d{1,2}:\d{2}:\d{2})?\n\Z")


class DumpIncomplete(Exception):
    """A dump that is empty, truncated or not in the expected format, with the reason as message."""


class DumpChecker(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...


def checker_for(dump_format: DumpFormat, *, verify_checksum: bool = True) -> DumpChecker:
    """Return a fresh checker for ``dump_format``.

    ``verify_checksum=False`` skips the RDB checksum, which Python computes at only a few MB/s;
    callers that run ``redis-check-rdb`` on the same bytes pass it.
    """
    if dump_format == "pg_dump_custom":
        return PgCustomChecker()
    if dump_format == "pg_dumpall_sql":
        return SqlDumpChecker(
            headers=(b"--\n-- PostgreSQL database cluster dump\n",),
            trailer=_PG_DUMPALL_TRAILER,
            marker="-- PostgreSQL database cluster dump complete",
            tool="pg_dumpall",
        )
    if dump_format == "mysqldump_sql":
        return SqlDumpChecker(
            headers=(b"-- MariaDB dump", b"-- MySQL dump", b"/*M!999999"),
            trailer=_MYSQLDUMP_TRAILER,
            marker="-- Dump completed",
            tool="mysqldump",
        )
    return RdbChecker(verify_checksum=verify_checksum)


class SqlDumpChecker:
    """Check a plain SQL dump: its first bytes and the tool's completion comment at the very end."""

    def __init__(
        self, *, headers: tuple[bytes, ...], trailer: re.Pattern[bytes], marker: str, tool: str
    ) -> None:
        self._headers = headers
        self._trailer = trailer
        self._marker = marker
        self._tool = tool
        self._head = b""
        self._tail = b""
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._head) < _HEADER_BYTES:
            self._head += chunk[: _HEADER_BYTES - len(self._head)]
        self._tail = (self._tail + chunk)[-_TAIL_BYTES:]

    def finish(self) -> None:
        if self._size == 0:
            raise DumpIncomplete(f"{self._tool} wrote an empty dump")
        if not self._head.startswith(self._headers):
            raise DumpIncomplete(f"{self._tool} output does not start with a {self._tool} header")
        if not self._trailer.search(self._tail):
            raise DumpIncomplete(
                f"{self._tool} output does not end with {self._marker!r}: the dump is truncated "
                f"({self._size} bytes)"
            )


class RdbChecker:
    """Check a Redis RDB file: magic and version, then the EOF opcode and its CRC-64 checksum."""

    def __init__(self, *, verify_checksum: bool = True) -> None:
        self._verify_checksum = verify_checksum
        self._head = b""
        self._tail = b""
        self._size = 0
        self._crc = 0
        self._last_checksummed = -1

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._head) < 9:
            self._head += chunk[: 9 - len(self._head)]
        # The checksum covers every byte except its own last 8, so hold those back.
        pending = self._tail + chunk
        checksummed = pending[:-8]
        if checksummed:
            if self._verify_checksum:
                self._crc = crc64_jones(checksummed, self._crc)
            self._last_checksummed = checksummed[-1]
        self._tail = pending[-8:]

    def finish(self) -> None:
        if self._size == 0:
            raise DumpIncomplete("redis-cli wrote an empty RDB file")
        if not (self._head.startswith(b"REDIS") and self._head[5:9].isdigit()):
            raise DumpIncomplete(
                "the output is not an RDB file: it does not start with 'REDIS' and a version"
            )
        if self._size < 9 + 1 + 8:
            raise DumpIncomplete(f"the RDB file is truncated: {self._size} bytes is only a header")
        if self._last_checksummed != _RDB_EOF:
            raise DumpIncomplete("the RDB file is truncated: it does not end with the EOF opcode")
        stored = int.from_bytes(self._tail, "little")
        # Redis writes a zero checksum when rdbchecksum is off.
        if self._verify_checksum and stored not in (0, self._crc):
            raise DumpIncomplete(
                f"the RDB file is corrupt: checksum {stored:016x} does not match "
                f"the content's checksum {self._crc:016x}"
            )


_RDB_EOF = 0xFF


def _crc64_table() -> list[int]:
    # CRC-64/Jones as Redis uses it: reflected polynomial 0x95ac9329ac4bc9b5, no final XOR.
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_TABLE = _crc64_table()


def crc64_jones(data: bytes, crc: int = 0) -> int:
    """Continue the CRC-64/Jones checksum ``crc`` over ``data`` (Redis's RDB checksum)."""
    table = _CRC64_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


# Archive format of pg_dump --format=custom, from PostgreSQL's pg_backup_archiver.c and
# pg_backup_custom.c. Versions are (major, minor, revision).
_BLOCK_DATA = 1
_BLOCK_LARGE_OBJECTS = 3
_OFFSET_NOT_SET = 1
_OFFSET_SET = 2
_OFFSET_NO_DATA = 3
_FORMAT_CUSTOM = 1
# NOTE: only archives of pg_dump 15 (format version 1.14) are tested against a real pg_dump.
# The fields of 1.15 (compression algorithm) and 1.16 (relation kind) follow the source.
_OLDEST_VERSION = (1, 12, 0)
_NEWEST_VERSION = (1, 16, 0)

# A parser request: ("read", n) returns the next n bytes, ("skip", n) discards them.
_Request = tuple[Literal["read", "skip"], int]


class PgCustomChecker:
    """Parse a custom-format archive as it streams and check that every data block is there.

    The table of contents at the start lists each entry that has data. pg_dump writes those
    data blocks after it, each as length-prefixed chunks ending with a zero length, and
    nothing after the last block, so a cut anywhere leaves a block missing or unfinished.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._size = 0
        self._parser = self._parse()
        self._request: _Request | None = next(self._parser)
        self._error: DumpIncomplete | None = None
        self._done = False

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._error is not None or self._done:
            if self._done and chunk:
                self._error = DumpIncomplete("the archive has data after its last block")
            return
        self._buffer += chunk
        self._advance(at_end=False)

    def finish(self) -> None:
        if self._size == 0:
            raise DumpIncomplete("pg_dump wrote an empty archive")
        if self._error is None and not self._done:
            self._advance(at_end=True)
        if self._error is not None:
            raise self._error

    def _advance(self, *, at_end: bool) -> None:
        try:
            while self._request is not None:
                kind, length = self._request
                if kind == "skip":
                    taken = min(length, len(self._buffer))
                    del self._buffer[:taken]
                    if taken < length:
                        self._request = ("skip", length - taken)
                        if at_end:
                            self._request = self._parser.send(None)
                            continue
                        break
                    self._request = self._parser.send(b"")
                    continue
                if len(self._buffer) < length:
                    if at_end and length > 0:
                        # The parser may accept the end of the stream in place of a block.
                        self._request = self._parser.send(None)
                        continue
                    break
                data = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._request = self._parser.send(data)
        except StopIteration:
            self._done = True
            self._request = None
            if self._buffer:
                self._error = DumpIncomplete("the archive has data after its last block")
        except DumpIncomplete as exc:
            self._error = exc
            self._request = None

    def _parse(self) -> Generator[_Request, bytes | None, None]:
        def read(length: int) -> Generator[_Request, bytes | None, bytes]:
            data = yield ("read", length)
            if data is None:
                raise DumpIncomplete(truncated)
            return data

        truncated = "the archive is truncated: it ends inside its header or table of contents"
        magic = yield from read(5)
        if magic != b"PGDMP":
            raise DumpIncomplete("the output is not a pg_dump custom-format archive: no 'PGDMP' header")
        version = tuple((yield from read(3)))
        if not _OLDEST_VERSION <= version <= _NEWEST_VERSION:
            shown = ".".join(str(part) for part in version)
            raise DumpIncomplete(f"archive version {shown} is not supported by this check")
        int_size, offset_size, archive_format = yield from read(3)
        if archive_format != _FORMAT_CUSTOM:
            raise DumpIncomplete(f"the archive is in format {archive_format}, not the custom format")

        def read_int() -> Generator[_Request, bytes | None, int]:
            raw = yield from read(1 + int_size)
            value = int.from_bytes(raw[1:], "little")
            return -value if raw[0] else value

        def read_string() -> Generator[_Request, bytes | None, bytes | None]:
            length = yield from read_int()
            if length < 0:
                return None
            return (yield from read(length))

        if version >= (1, 15, 0):
            yield from read(1)  # compression algorithm
        else:
            yield from read_int()  # compression level
        for _ in range(7):  # creation time: seconds, minutes, hours, day, month, year, DST
            yield from read_int()
        for _ in range(3):  # database name, server version, pg_dump version
            yield from read_string()

        def skip(length: int) -> Generator[_Request, bytes | None, None]:
            if (yield ("skip", length)) is None:
                raise DumpIncomplete(truncated)

        def skip_chunks() -> Generator[_Request, bytes | None, None]:
            while (length := (yield from read_int())) != 0:
                if length < 0:
                    raise DumpIncomplete(f"the archive is corrupt: chunk length {length}")
                yield from skip(length)

        expected: set[int] = set()
        for _ in range((yield from read_int())):
            dump_id = yield from read_int()
            yield from read_int()  # had dumper
            yield from read_string()  # table oid
            yield from read_string()  # oid
            yield from read_string()  # tag
            yield from read_string()  # description
            yield from read_int()  # section
            yield from read_string()  # definition
            yield from read_string()  # drop statement
            yield from read_string()  # COPY statement
            yield from read_string()  # schema
            yield from read_string()  # tablespace
            if version >= (1, 14, 0):
                yield from read_string()  # table access method
            if version >= (1, 16, 0):
                yield from read_int()  # relation kind
            yield from read_string()  # owner
            yield from read_string()  # "with oids"
            while (yield from read_string()) is not None:  # dependencies, ending with NULL
                pass
            offset_flag = (yield from read(1 + offset_size))[0]
            if offset_flag in (_OFFSET_NOT_SET, _OFFSET_SET):
                expected.add(dump_id)
            elif offset_flag != _OFFSET_NO_DATA:
                raise DumpIncomplete(f"the archive is corrupt: entry {dump_id} has data flag {offset_flag}")

        truncated = "the archive is truncated: it ends inside a data block"
        while expected:
            block = yield ("read", 1)
            if block is None:
                missing = ", ".join(str(dump_id) for dump_id in sorted(expected)[:10])
                raise DumpIncomplete(
                    f"the archive is truncated: {len(expected)} data block(s) missing (entries {missing})"
                )
            dump_id = yield from read_int()
            if dump_id not in expected:
                raise DumpIncomplete(f"the archive is corrupt: unexpected data block for entry {dump_id}")
            if block[0] == _BLOCK_DATA:
                yield from skip_chunks()
            elif block[0] == _BLOCK_LARGE_OBJECTS:
                while (yield from read_int()) != 0:  # each large object's oid, ending with 0
                    yield from skip_chunks()
            else:
                raise DumpIncomplete(f"the archive is corrupt: unknown block type {block[0]}")
            expected.discard(dump_id)
