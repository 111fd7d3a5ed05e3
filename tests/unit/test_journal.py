"""The local append-only journal."""

from __future__ import annotations

import pytest

from actors.journal.journal import Journal, JournalCorrupt, read_journal


def test_journal_appends_and_reads_back_in_order(tmp_path) -> None:
    j = Journal(tmp_path / "j.log")
    assert j.append([{"type": "A", "x": 1}, {"type": "B", "x": 2.5}]) == 2
    assert j.append([]) == 2
    assert j.append([{"type": "C"}]) == 3
    j.close()
    assert [r["type"] for _, r in read_journal(tmp_path / "j.log")] == ["A", "B", "C"]


def test_reopened_journal_continues_the_sequence(tmp_path) -> None:
    j = Journal(tmp_path / "j.log")
    j.append([{"type": "A"}])
    j.close()
    j2 = Journal(tmp_path / "j.log")
    assert j2.append([{"type": "B"}]) == 2
    j2.close()
    assert [s for s, _ in read_journal(tmp_path / "j.log")] == [1, 2]


def test_records_are_canonical_bytes(tmp_path) -> None:
    j = Journal(tmp_path / "j.log", fsync=False)
    j.append([{"b": 1, "a": [1, 2]}])
    j.close()
    line = (tmp_path / "j.log").read_text()
    assert line.endswith(' {"a":[1,2],"b":1}\n')


def test_corrupted_record_is_detected(tmp_path) -> None:
    j = Journal(tmp_path / "j.log")
    j.append([{"type": "A", "qty": 10}, {"type": "B"}])
    j.close()
    p = tmp_path / "j.log"
    p.write_text(p.read_text().replace('"qty":10', '"qty":99'))
    with pytest.raises(JournalCorrupt, match="checksum"):
        list(read_journal(p))


def test_torn_last_line_is_reported(tmp_path) -> None:
    j = Journal(tmp_path / "j.log")
    j.append([{"type": "A"}])
    j.close()
    p = tmp_path / "j.log"
    with open(p, "a") as fh:
        fh.write('2 deadbeef {"type":')
    with pytest.raises(JournalCorrupt, match="torn"):
        list(read_journal(p))


def test_nan_is_refused_not_written(tmp_path) -> None:
    j = Journal(tmp_path / "j.log")
    with pytest.raises(ValueError):
        j.append([{"x": float("nan")}])
