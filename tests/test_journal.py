import numpy as np
import pytest

from compss_infer.core.contracts import ChunkResult, TaskTiming
from compss_infer.core.errors import InputError
from compss_infer.run.journal import HEAD_SIZE, Journal, JournalCorrupt, Record
from compss_infer.run.rows import RowFormat, format_chunk


def record(start, ids, errors=None, attempts=1):
    res = ChunkResult(class_ids=np.array(ids, np.int64), scores=np.linspace(0.5, 0.9, len(ids)).astype(np.float32),
                      errors=errors or {}, timing=TaskTiming("h", 1, 10.0, 11.0))
    rows = format_chunk(res, [f"p{start + j}.png" for j in range(len(ids))], RowFormat())
    return Record.from_rows(start, rows, attempts)


def test_records_round_trip_and_come_back_in_input_order(tmp_path):
    j = Journal(str(tmp_path / "o.csv"))
    j.create()
    j.write_header({"x": 1})
    j.append(record(4, [1, 2]))
    j.append(record(0, [3, -1, 5, 6], {1: "DecodeError: bad"}, attempts=2))
    j.append(record(6, [7]))
    recs = list(j.records_in_order(7))
    assert [r.start for r in recs] == [0, 4, 6]
    assert recs[0].errors == {1: "DecodeError: bad"} and recs[0].attempts == 2 and recs[0].class_ids[2] == 5
    assert recs[0].class_ids[1] == -1
    assert recs[0].rows.decode().splitlines() == ["p0.png,3,0.5,,", "p1.png,,,,DecodeError: bad",
                                                   "p2.png,5,0.766667,,", "p3.png,6,0.9,,"]
    assert j.covered() == [(0, 7)]
    with pytest.raises(JournalCorrupt, match="no record starting at image 7"):
        list(j.records_in_order(9))
    j.close()


def test_torn_last_record_is_dropped_on_reopen(tmp_path):
    j = Journal(str(tmp_path / "o.csv"))
    j.create()
    j.write_header({"fingerprint": "f"})
    j.append(record(0, [1, 2]))
    j.close()
    with open(j.chunks_path, "ab") as fh:
        fh.write(record(2, [3, 4]).encode()[:-5])  # the master died mid-write
    again = Journal(str(tmp_path / "o.csv"))
    assert again.reopen()["fingerprint"] == "f"
    assert again.covered() == [(0, 2)]
    again.append(record(2, [3, 4]))
    assert [s for s, _, _ in again.scan()] == [0, 2] and not again.skipped
    assert [r.start for r in again.records_in_order(4)] == [0, 2]
    again.close()


def test_a_corrupt_record_in_the_middle_is_found_and_its_range_redone(tmp_path):
    j = Journal(str(tmp_path / "o.csv"))
    j.create()
    j.write_header({})
    sizes = []
    for s in (0, 2, 4):
        j.append(record(s, [1, 2]))
        sizes.append(len(record(s, [1, 2]).encode()))
    j.close()
    with open(j.chunks_path, "rb+") as fh:  # flip a byte in the middle record's rows
        fh.seek(sizes[0] + sizes[1] - 3)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    again = Journal(str(tmp_path / "o.csv"))
    again.reopen()
    assert again.covered() == [(0, 2), (4, 6)]  # the bad range is not counted as done
    with pytest.raises(JournalCorrupt, match="corrupt"):
        list(again.records_in_order(6))
    again.append(record(2, [1, 2]))  # the resumed run redoes it
    assert [r.start for r in again.records_in_order(6)] == [0, 2, 4]
    with open(again.chunks_path, "rb+") as fh:  # a damaged head: the scan finds the next record
        fh.seek(1)
        fh.write(b"X")
    assert [s for s, _, _ in again.scan()] == [4, 2] and again.skipped[0][0] == 0  # 0 and the old 2 skipped
    assert HEAD_SIZE < sizes[0]
    again.close()


def test_one_master_per_journal(tmp_path):
    first = Journal(str(tmp_path / "o.csv"))
    first.create()
    first.write_header({})
    second = Journal(str(tmp_path / "o.csv"))
    with pytest.raises(InputError, match="another compss-infer run"):
        second.create()
    second.remove()  # the loser of the race must not delete the winner's journal
    assert (tmp_path / "o.csv.journal" / "header.json").exists()
    with pytest.raises(InputError, match="another compss-infer run"):
        Journal(str(tmp_path / "o.csv")).reopen()
    first.remove()
    assert not (tmp_path / "o.csv.journal").exists()


def test_row_ends_survive_a_line_break_inside_a_row(tmp_path):
    from compss_infer.run.results import read_rows
    from compss_infer.run.sinks.parts import RowParts
    from compss_infer.run.rows import row_ends
    res = ChunkResult(class_ids=np.array([1, 2, 3], np.int64), scores=np.array([0.5, 0.6, 0.7], np.float32))
    rows = format_chunk(res, ["a.png", "b\nc.png", "d,é.png"], RowFormat())
    assert rows.ends is not None and len(rows.ends) == 3
    ends = row_ends(rows.rows, 3, rows.ends)
    assert rows.rows[:ends[0]] == b"a.png,1,0.5,,\n" and rows.rows[ends[0]:ends[1]] == b'"b\nc.png",2,0.6,,\n'
    w = RowParts(str(tmp_path / "out") + "/", "csv", 1, 2)
    w.write(rows.rows, 3, ends)
    w.close(3)
    assert [r["path"] for r in read_rows(str(tmp_path / "out"))] == ["a.png", "b\nc.png", "d,é.png"]
