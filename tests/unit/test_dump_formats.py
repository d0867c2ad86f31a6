"""Completeness checks of dump formats, and the database source rules, without Docker."""

from __future__ import annotations

import pytest

from hostcraft.backup.databases import DatabaseSource, _dump_plan, last_lines, scrub
from hostcraft.backup.dump_formats import DumpIncomplete, checker_for, crc64_jones
from hostcraft.errors import ValidationError

PG_DUMPALL = (
    b"--\n-- PostgreSQL database cluster dump\n--\n\nSET default_transaction_read_only = off;\n"
    b"CREATE ROLE reporter;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"
)
MYSQLDUMP = (
    b"-- MariaDB dump 10.19  Distrib 10.11.18-MariaDB\n--\n-- Host: 127.0.0.1    Database: shop\n"
    b"CREATE TABLE `items` (`id` int);\nINSERT INTO `items` VALUES (1),(2);\n"
    b"/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed on 2026-12-04 22:54:21\n"
)


def check(dump_format: str, data: bytes, *, chunk: int | None = None) -> None:
    checker = checker_for(dump_format)  # type: ignore[arg-type]
    step = chunk or max(1, len(data))
    for start in range(0, len(data), step):
        checker.feed(data[start : start + step])
    checker.finish()


def pg_int(value: int) -> bytes:
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(4, "little")


def pg_string(value: bytes | None) -> bytes:
    return pg_int(-1) if value is None else pg_int(len(value)) + value


def pg_archive(*, data_ids: tuple[int, ...] = (2, 3), large_objects: bool = False) -> bytes:
    """Build a custom-format archive (version 1.14) with one schema entry and data entries."""
    header = b"PGDMP" + bytes([1, 14, 0, 4, 8, 1]) + pg_int(-1)
    header += b"".join(pg_int(value) for value in (5, 4, 3, 2, 1, 126, 0))
    header += pg_string(b"shop") + pg_string(b"15.18") + pg_string(b"15.18")
    entries = [(1, False)] + [(dump_id, True) for dump_id in data_ids]
    toc = pg_int(len(entries))
    for dump_id, has_data in entries:
        toc += pg_int(dump_id) + pg_int(1 if has_data else 0)
        toc += b"".join(pg_string(value) for value in (b"1259", b"16384", b"items", b"TABLE DATA"))
        toc += pg_int(3)
        toc += b"".join(
            pg_string(value) for value in (b"", b"", b"COPY items FROM stdin;", b"public", b"", b"heap")
        )
        toc += pg_string(b"postgres") + pg_string(b"false") + pg_string(b"1") + pg_string(None)
        toc += bytes([1 if has_data else 3]) + bytes(8)
    blocks = b""
    for dump_id in data_ids:
        if large_objects and dump_id == data_ids[-1]:
            blocks += (
                bytes([3]) + pg_int(dump_id) + pg_int(16400) + pg_int(3) + b"abc" + pg_int(0) + pg_int(0)
            )
        else:
            blocks += (
                bytes([1])
                + pg_int(dump_id)
                + pg_int(5)
                + b"\x78\x9c\x01\x02\x03"
                + pg_int(2)
                + b"ok"
                + pg_int(0)
            )
    return header + toc + blocks


def rdb(payload: bytes = b"\xfe\x00\xfb\x01\x00\x00\x01a\xc0\x01", *, checksum: bool = True) -> bytes:
    body = b"REDIS0010" + payload + b"\xff"
    return body + (crc64_jones(body) if checksum else 0).to_bytes(8, "little")


def test_crc64_matches_redis_reference_value() -> None:
    # Redis's own crc64 self test: crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
    assert crc64_jones(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64_jones(b"56789", crc64_jones(b"1234")) == 0xE9C6D914C4B8D9CA


@pytest.mark.parametrize(
    ("dump_format", "data"),
    [
        ("pg_dumpall_sql", PG_DUMPALL),
        ("mysqldump_sql", MYSQLDUMP),
        ("redis_rdb", rdb()),
        ("redis_rdb", rdb(checksum=False)),
        ("pg_dump_custom", pg_archive()),
        ("pg_dump_custom", pg_archive(data_ids=())),
        ("pg_dump_custom", pg_archive(large_objects=True)),
    ],
    ids=[
        "pg_dumpall",
        "mysqldump",
        "rdb",
        "rdb-no-checksum",
        "pg-custom",
        "pg-schema-only",
        "pg-large-objects",
    ],
)
def test_complete_dump_passes_in_any_chunking(dump_format: str, data: bytes) -> None:
    for chunk in (None, 1, 7, 4096):
        check(dump_format, data, chunk=chunk)


@pytest.mark.parametrize(
    ("dump_format", "data"),
    [
        ("pg_dumpall_sql", PG_DUMPALL),
        ("mysqldump_sql", MYSQLDUMP),
        ("redis_rdb", rdb()),
        ("pg_dump_custom", pg_archive()),
        ("pg_dump_custom", pg_archive(large_objects=True)),
    ],
    ids=["pg_dumpall", "mysqldump", "rdb", "pg-custom", "pg-large-objects"],
)
def test_every_truncation_is_rejected(dump_format: str, data: bytes) -> None:
    for cut in range(len(data)):
        with pytest.raises(DumpIncomplete):
            check(dump_format, data[:cut])


@pytest.mark.parametrize(
    ("dump_format", "data", "reason"),
    [
        ("pg_dumpall_sql", b"", "empty"),
        ("pg_dumpall_sql", b"--\n-- PostgreSQL database cluster dump\n--\n\n", "truncated"),
        ("pg_dumpall_sql", b"SELECT 1;\n-- PostgreSQL database cluster dump complete\n", "header"),
        ("mysqldump_sql", b"-- MariaDB dump 10.19\n--\n", "truncated"),
        ("mysqldump_sql", MYSQLDUMP.replace(b"-- Dump completed", b"-- Dump"), "truncated"),
        ("redis_rdb", b"REDIS0010", "only a header"),
        ("redis_rdb", b"GARBAGE0010" + bytes(20), "not an RDB"),
        ("redis_rdb", rdb()[:-1] + b"\x00", "checksum"),
        ("redis_rdb", rdb() + b"0123456789abcdef0123456789abcdef01234567", "EOF opcode"),
        ("pg_dump_custom", b"", "empty"),
        ("pg_dump_custom", b"PGDMP", "truncated"),
        ("pg_dump_custom", b"NOTPG" + pg_archive()[5:], "PGDMP"),
        ("pg_dump_custom", pg_archive()[:5] + bytes([1, 9, 0]) + pg_archive()[8:], "not supported"),
        ("pg_dump_custom", pg_archive() + b"\x00", "after its last block"),
    ],
)
def test_invalid_dump_is_rejected_with_reason(dump_format: str, data: bytes, reason: str) -> None:
    with pytest.raises(DumpIncomplete) as raised:
        check(dump_format, data)
    assert reason in str(raised.value)


def test_pg_archive_missing_block_names_entries() -> None:
    archive = pg_archive(data_ids=(2, 3))
    # Drop the last data block (block type, id, chunk "\x78...", chunk "ok", end).
    last_block = 1 + 5 + 5 + 5 + 5 + 2 + 5

    with pytest.raises(DumpIncomplete) as raised:
        check("pg_dump_custom", archive[:-last_block])

    assert "1 data block(s) missing (entries 3)" in str(raised.value)


def test_database_source_rejects_bad_fields() -> None:
    cases = [
        ({"engine": "oracle"}, "engine"),
        ({"engine": "postgresql", "port": 0}, "port"),
        ({"engine": "postgresql", "port": 70000}, "port"),
        ({"engine": "mariadb", "database": ""}, "database"),
        ({"engine": "mariadb", "database": "a/b"}, "database"),
        ({"engine": "mariadb", "database": "x" * 64}, "database"),
        ({"engine": "postgresql", "user": " "}, "user"),
    ]
    for arguments, field in cases:
        with pytest.raises(ValidationError) as raised:
            DatabaseSource(**arguments)  # type: ignore[arg-type]
        assert raised.value.field == field, arguments


def test_database_source_hides_password_and_fills_defaults() -> None:
    source = DatabaseSource(engine="mariadb", password="Top-Secret-9")

    assert "Top-Secret-9" not in repr(source)
    assert source.effective_user == "root"
    assert source.effective_port == 3306


@pytest.mark.parametrize(
    "source",
    [
        DatabaseSource(engine="postgresql", password="Top-Secret-9", database="shop"),
        DatabaseSource(engine="postgresql", password="Top-Secret-9"),
        DatabaseSource(engine="mysql", password="Top-Secret-9", database="shop"),
        DatabaseSource(engine="redis", user="backup", password="Top-Secret-9"),
    ],
    ids=["pg_dump", "pg_dumpall", "mysqldump", "redis"],
)
def test_dump_command_keeps_password_in_environment(source: DatabaseSource) -> None:
    plan = _dump_plan(source)

    assert not any("Top-Secret-9" in argument for argument in plan.command)
    assert "Top-Secret-9" in plan.environment.values()


def test_scrub_removes_password_from_tool_output() -> None:
    output = b'FATAL: password "Top-Secret-9" rejected\nretry with Top-Secret-9\n'

    cleaned = scrub(output, "Top-Secret-9")

    assert "Top-Secret-9" not in cleaned
    assert last_lines(cleaned, 1) == "retry with ******"
