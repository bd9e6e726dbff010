"""The journal on its own: events round-trip, damaged files are read as far as they go,
a full disk drops and counts without leaving empty files, claims follow flock."""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from llmledger.core.billing import UsagePart
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.runtime.journal import (
    Chunk,
    Journal,
    decode_event,
    decode_with_text,
    encode_event,
)
from llmledger.runtime.spool import journal_status, set_aside


def event(i: int = 0, **fields: object) -> UsageEvent:
    return UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=datetime.now(UTC),
        usage=Usage(input_tokens=10, output_tokens=i),
        **fields,  # type: ignore[arg-type]
    )


def events_of(chunk: Chunk) -> list[UsageEvent]:
    """The chunk's records, every one an event (no captured calls were journaled)."""
    assert all(isinstance(e, UsageEvent) for e in chunk.events)
    return cast(list[UsageEvent], chunk.events)


def drain(journal: Journal) -> list[UsageEvent]:
    out: list[UsageEvent] = []
    while (chunk := journal.read(1000)) is not None:
        out.extend(events_of(chunk))
        journal.commit(chunk)
    return out


def test_every_field_round_trips() -> None:
    full = event(
        7,
        id="01JFULL",
        duration_ms=12.5,
        ttft_ms=3.0,
        response_model="gpt-4o-2024-08-06",
        operation="responses",
        stream=True,
        service_tier="flex",
        request_id="req_1",
        finish_reason="stop",
        status="error",
        error_type="APIError",
        error_message="boom",
        usage_raw={"prompt_tokens": 10, "nested": [1, 2.5, None, True]},
        usage_source="estimated",
        cost=Decimal("0.000123456"),
        cost_breakdown={"input": Decimal("0.0001"), "output": Decimal("0.000023456")},
        cost_source="catalog",
        price_ref="genai-prices@1:openai/gpt-4o",
        incomplete_reason="no rate for audio",
        tenant="acme",
        user="u",
        feature="chat",
        session="s",
        tags={"env": "prod"},
        api_key_fingerprint="sha256:abc",
        warnings=("odd",),
        usage_parts=(
            UsagePart(None, Usage(input_tokens=5)),
            UsagePart("o3", Usage(output_tokens=2)),
        ),
        fee_counts={"web_search": 2},
    )
    assert decode_event(encode_event(full)) == full
    odd = event(usage_raw={"when": datetime(2025, 1, 1, tzinfo=UTC)})  # marshal cannot
    assert decode_event(encode_event(odd)) == odd
    local = UsageEvent(
        provider="openai",
        model="m",
        ts=datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    )
    assert decode_event(encode_event(local)).ts == local.ts  # the same instant, in UTC


def test_kept_text_round_trips_in_its_events_record() -> None:
    e = event(3)
    for text in [("Hi?", "Hello."), (None, "only an answer"), ("caf\u00e9 \ud800", None)]:
        assert decode_with_text(encode_event(e, text)) == (e, text)
        assert decode_event(encode_event(e, text)) == e
    assert decode_with_text(encode_event(e)) == (e, None)
    odd = event(usage_raw={"when": datetime(2025, 1, 1, tzinfo=UTC)})  # pickled, with text
    assert decode_with_text(encode_event(odd, ("p", "r"))) == (odd, ("p", "r"))
    with pytest.raises(ValueError, match="unreadable record"):
        decode_with_text(b"t" + marshal.dumps((b"t", "p", None)))
    with pytest.raises(ValueError, match="unreadable record"):
        decode_with_text(b"t" + marshal.dumps((encode_event(e), 3, None)))


def test_an_events_text_is_in_its_record_and_comes_back_with_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    events = [event(i) for i in range(4)]
    assert journal.append(events[0])
    assert journal.append(events[1], ("asked?", "answered."))
    assert journal.append(events[2])
    assert journal.append(events[3], (None, "only the answer"))
    journal._forget_after_fork()  # the process dies: what is on disk is all there is
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 1
    chunk = reader.read(100)
    assert chunk is not None and [e.id for e in events_of(chunk)] == [e.id for e in events]
    assert chunk.texts == {
        events[1].id: ("asked?", "answered."),
        events[3].id: (None, "only the answer"),
    }
    reader.commit(chunk)
    reader.close()


def test_events_come_back_in_order_and_a_stored_segment_is_removed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=2000)  # a new segment every few events
    events = [event(i) for i in range(50)]
    for e in events:
        assert journal.append(e)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    assert [e.id for e in drain(journal)] == [e.id for e in events]
    assert journal.pending == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the one still being appended to
    journal.close()
    assert list(tmp_path.glob("*.seg")) == []


def test_a_torn_last_record_and_a_damaged_one_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Journal(tmp_path)
    events = [event(i) for i in range(4)]
    for e in events:
        writer.append(e)
    [segment] = tmp_path.glob("*.seg")
    assert writer._active is not None
    end = writer._active.end  # where the records end (the rest of the file is zeros)
    writer._forget_after_fork()  # as if the process had died: its lock is gone
    data = bytearray(segment.read_bytes()[:end])
    data[20] ^= 0xFF  # inside the first record's payload: its checksum fails
    torn = struct.pack("<II", 1000, 0) + b"cut short"  # a record whose write was cut
    segment.write_bytes(bytes(data) + torn)
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 1
    with caplog.at_level(logging.WARNING):
        chunk = reader.read(100)
    assert chunk is not None
    assert [e.id for e in events_of(chunk)] == [e.id for e in events[1:]]
    assert chunk.corrupt == 2
    assert "checksum" in caplog.text and "incomplete record" in caplog.text
    reader.commit(chunk)
    assert not reader.orphans_waiting and list(tmp_path.glob("*.seg")) == []


@pytest.mark.parametrize("zeros", [1, 4, 7])
def test_fewer_zeros_than_a_header_after_the_last_record_end_a_dead_segment_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, zeros: int
) -> None:
    # A full segment's records can end a few bytes before its end: the next record did not
    # fit there and went to the next segment.  Those zeros are no record, cut short or not.
    writer = Journal(tmp_path)
    events = [event(i) for i in range(3)]
    for e in events:
        writer.append(e)
    [segment] = tmp_path.glob("*.seg")
    assert writer._active is not None
    end = writer._active.end
    writer._forget_after_fork()  # as if the process had died: its lock is gone
    segment.write_bytes(segment.read_bytes()[:end] + bytes(zeros))
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 1
    with caplog.at_level(logging.WARNING):
        chunk = reader.read(100)
    assert chunk is not None
    assert [e.id for e in events_of(chunk)] == [e.id for e in events]
    assert chunk.corrupt == 0 and "incomplete" not in caplog.text
    reader.commit(chunk)
    assert not reader.orphans_waiting and list(tmp_path.glob("*.seg")) == []


def test_a_live_process_keeps_its_segment_and_a_dead_one_gives_it_up(tmp_path: Path) -> None:
    owner = Journal(tmp_path)
    owner.append(event())
    other = Journal(tmp_path)
    assert other.claim_orphans() == 0  # flock held by the owner
    [segment] = tmp_path.glob("*.seg")
    fd = os.open(segment, os.O_RDONLY)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    owner._forget_after_fork()  # closing the file is what a death does
    assert other.claim_orphans() == 1
    assert len(drain(other)) == 1
    other.close()


def test_the_disk_limit_drops_counts_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j", limit_bytes=1000, drop_log_interval=3600)
    with caplog.at_level(logging.ERROR):
        results = [journal.append(event(i)) for i in range(10)]
    kept = results.count(True)
    assert 0 < kept < 10 and journal.dropped == 10 - kept
    assert caplog.text.count("dropped an event") == 1 and "is full" in caplog.text
    journal.close()
    status = journal_status(tmp_path)
    assert status.dropped_events == 0  # not under a spool folder's j-* name
    assert int(next((tmp_path / "j").glob("*.dropped")).read_text()) == 10 - kept


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (CI runs as root, as here), filled up."""
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        (folder / "filler").write_bytes(b"x" * 60_000)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_drops_and_counts_and_leaves_no_empty_files(full_disk: Path) -> None:
    journal = Journal(full_disk / "spool" / "j-x")
    results = [journal.append(event(i, error_message="x" * 500)) for i in range(40)]
    assert results.count(False) == journal.dropped > 0
    drain(journal)
    journal.close()
    kept = set_aside(full_disk / "spool", b"y" * 10_000, 3, 10**9)
    assert isinstance(kept, str) and "cannot write" in kept
    leftovers = [p for p in full_disk.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert leftovers == []
    assert not list(full_disk.rglob("*.tmp"))


def test_appends_move_to_the_mapped_segment_the_writer_made(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = event(0)
    assert journal.append(first)  # no spare yet: a plain segment, written with pwrite
    assert journal._active is not None and journal._active.map is None
    journal.prepare_spare()
    later = [event(i) for i in range(1, 50)]
    for e in later:
        assert journal.append(e)
    active = journal._active
    assert active is not None and active.map is not None  # appends are memory copies now
    assert len(list(tmp_path.glob("*.seg"))) == 2
    assert [e.id for e in drain(journal)] == [e.id for e in [first, *later]]
    journal.close()
    assert list(tmp_path.glob("*.seg")) == []


def test_a_dead_process_s_mapped_segment_is_read_up_to_its_unused_end(tmp_path: Path) -> None:
    owner = Journal(tmp_path, segment_bytes=1 << 20)
    owner.prepare_spare()
    events = [event(i) for i in range(5)]
    for e in events:
        owner.append(e)
    [segment] = tmp_path.glob("*.seg")
    assert segment.stat().st_size == 1 << 20  # allocated whole: zeros after the records
    owner._forget_after_fork()  # as if the process had died
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 1
    assert [e.id for e in drain(reader)] == [e.id for e in events]
    assert not reader.orphans_waiting and list(tmp_path.glob("*.seg")) == []


def test_a_dead_process_s_segment_read_in_whole_chunks_is_finished(tmp_path: Path) -> None:
    # The last chunk ends where the records end; the zeros after them are found by
    # the next read, which must still let the segment go (flush() waits for it).
    owner = Journal(tmp_path, segment_bytes=1 << 20)
    owner.prepare_spare()
    events = [event(i) for i in range(6)]
    for e in events:
        owner.append(e)
    owner._forget_after_fork()
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 1
    read: list[UsageEvent] = []
    while (chunk := reader.read(3)) is not None:
        read.extend(events_of(chunk))
        reader.commit(chunk)
    assert [e.id for e in read] == [e.id for e in events]
    assert not reader.orphans_waiting and list(tmp_path.glob("*.seg")) == []


def test_a_stored_mapped_segment_left_by_a_dead_process_is_removed(tmp_path: Path) -> None:
    owner = Journal(tmp_path)
    owner.prepare_spare()
    owner.append(event())
    assert len(drain(owner)) == 1  # stored: its .ack says so
    owner._forget_after_fork()
    reader = Journal(tmp_path)
    assert reader.claim_orphans() == 0  # nothing left to replay in it
    assert list(tmp_path.glob("*.seg")) == []
