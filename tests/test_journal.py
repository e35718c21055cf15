import json

import numpy as np
import pytest

from compss_infer.contracts import ChunkResult, TaskTiming
from compss_infer.errors import InputError
from compss_infer.journal import Journal, Record


def result(ids, errors=None):
    return ChunkResult(class_ids=np.array(ids, np.int64), scores=np.linspace(0.5, 0.9, len(ids)).astype(np.float32),
                       errors=errors or {}, timing=TaskTiming("h", 1, 10.0, 11.0))


def test_records_round_trip_and_come_back_in_input_order(tmp_path):
    j = Journal(str(tmp_path / "o.csv"))
    j.create()
    j.write_header({"x": 1})
    j.append(Record.from_result(4, result([1, 2]), 1))
    j.append(Record.from_result(0, result([3, -1, 5, 6], {1: "DecodeError: bad"}), 2))
    j.append(Record.from_result(6, result([7]), 1))
    recs = list(j.records_in_order(7))
    assert [r.start for r in recs] == [0, 4, 6]
    assert recs[0].errors == {1: "DecodeError: bad"} and recs[0].attempts == 2 and recs[0].class_ids[2] == 5
    assert j.covered() == [(0, 7)]
    with pytest.raises(RuntimeError, match="no record starting at image 7"):
        list(j.records_in_order(9))
    j.close()


def test_torn_last_line_is_dropped_on_reopen(tmp_path):
    j = Journal(str(tmp_path / "o.csv"))
    j.create()
    j.write_header({"fingerprint": "f"})
    j.append(Record.from_result(0, result([1, 2]), 1))
    j.close()
    with open(j.chunks_path, "a") as fh:
        fh.write('{"s": 2, "n": 2, "ids": [')  # the master died mid-write
    again = Journal(str(tmp_path / "o.csv"))
    assert again.reopen()["fingerprint"] == "f"
    assert again.covered() == [(0, 2)]
    again.append(Record.from_result(2, result([3, 4]), 1))
    assert [json.loads(line)["s"] for line in open(j.chunks_path)] == [0, 2]
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
