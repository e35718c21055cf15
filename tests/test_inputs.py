import os

import pytest

from compss_infer.core.errors import InputError
from compss_infer.images.listing import discover
from compss_infer.run.inputs import iter_chunks, make_plan, subtract


def touch(root, rel):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").close()


def test_discovery_is_recursive_sorted_by_posix_path_and_case_insensitive(tmp_path):
    names = ["b.PNG", "a/x.jpg", "a-b.jpeg", "a/c/d.TIFF", "z.webp", "notes.txt", "a/y.Gif", "c.bmp", "d.tif"]
    for n in names:
        touch(tmp_path, n)
    got = list(discover(str(tmp_path)))
    assert got == sorted(n for n in names if not n.endswith(".txt"))
    assert got[0] == "a-b.jpeg"  # '-' sorts before '/', like a sorted list of full paths


def test_list_file_keeps_order_resolves_relative_and_skips_blank(tmp_path):
    (tmp_path / "lists").mkdir()
    lst = tmp_path / "lists" / "l.txt"
    lst.write_text("z.png\n\n/abs/a.png\r\nsub dir/ü é.jpg\n   \n")
    plan = make_plan(None, str(lst), str(tmp_path / "plan.jsonl"))
    assert list(plan.listed()) == ["z.png", "/abs/a.png", "sub dir/ü é.jpg"]
    assert plan.absolute("z.png") == str(tmp_path / "lists" / "z.png")
    assert plan.absolute("/abs/a.png") == "/abs/a.png"


def test_plan_digest_tracks_content(tmp_path):
    for n in ("a.png", "b.png"):
        touch(tmp_path / "i", n)
    p1 = make_plan(str(tmp_path / "i"), None, str(tmp_path / "p1"))
    touch(tmp_path / "i", "c.png")
    p2 = make_plan(str(tmp_path / "i"), None, str(tmp_path / "p2"))
    assert p1.count == 2 and p2.count == 3 and p1.digest != p2.digest


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        make_plan(str(tmp_path / "missing"), None, str(tmp_path / "p"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        make_plan(str(tmp_path / "empty"), None, str(tmp_path / "p"))
    with pytest.raises(InputError, match="exactly one"):
        make_plan(None, None, str(tmp_path / "p"))
    with pytest.raises(InputError, match="cannot read"):
        make_plan(None, str(tmp_path / "nolist.txt"), str(tmp_path / "p"))


def test_subtract_ranges():
    assert subtract(0, 10, []) == [(0, 10)]
    assert subtract(0, 10, [(0, 10)]) == []
    assert subtract(0, 10, [(2, 4), (6, 7)]) == [(0, 2), (4, 6), (7, 10)]
    assert subtract(5, 10, [(0, 6), (9, 20)]) == [(6, 9)]


def test_chunks_cover_the_plan_in_order_and_skip_covered(tmp_path):
    for i in range(10):
        touch(tmp_path / "i", f"{i}.png")
    plan = make_plan(str(tmp_path / "i"), None, str(tmp_path / "p"))
    chunks = list(iter_chunks(plan, 4))
    assert [(c.start, len(c.paths)) for c in chunks] == [(0, 4), (4, 4), (8, 2)]
    assert all(os.path.isabs(p) for c in chunks for p in c.paths)
    rest = list(iter_chunks(plan, 4, covered=[(0, 2), (4, 8)]))
    assert [(c.start, len(c.paths)) for c in rest] == [(2, 2), (8, 2)]
    assert rest[0].paths[0].endswith("2.png")


def test_chunk_bounds_ramp_up_then_stay_full_size():
    from compss_infer.run.inputs import chunk_bounds
    assert list(chunk_bounds(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(chunk_bounds(40, 16, first=2)) == [(0, 2), (2, 6), (6, 14), (14, 30), (30, 40)]
    bounds = list(chunk_bounds(1000, 100, first=8))
    assert bounds[0] == (0, 8) and bounds[-1][1] == 1000
    assert all(a == b0 for (_, a), (b0, _) in zip(bounds, bounds[1:]))  # contiguous, no gaps


def test_list_encoding_refusals_name_the_line_and_the_likely_encoding(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_bytes("a.png\r\nb.png\r\n".encode("utf-16"))  # what PowerShell's Out-File writes
    with pytest.raises(InputError, match=r"line 1: not UTF-8; it looks like UTF-16-LE .*save it as UTF-8"):
        make_plan(None, str(lst), str(tmp_path / "p"))
    lst.write_bytes("a.png\nb.png\n".encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(InputError, match=r"line 1: holds a NUL byte.*UTF-16-LE"):
        make_plan(None, str(lst), str(tmp_path / "p"))
    lst.write_bytes(b"a.png\nb.png\nc\x00.png\n")
    with pytest.raises(InputError, match=r"line 3: holds a NUL byte"):
        make_plan(None, str(lst), str(tmp_path / "p"))
    lst.write_bytes(b"a.png\n\xe9t\xe9.png\n")  # Latin-1
    with pytest.raises(InputError, match=r"line 2: not UTF-8 \(byte 0xe9\)"):
        make_plan(None, str(lst), str(tmp_path / "p"))
    assert not (tmp_path / "p").exists()


def test_list_bom_comments_blanks_and_duplicates(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_bytes(b'\xef\xbb\xbfa.png\n# a comment\n\n  \nb.png\na.png\n"q".png\n #not a comment.png\nlast.png')
    plan = make_plan(None, str(lst), str(tmp_path / "p"))
    assert list(plan.listed()) == ["a.png", "b.png", "a.png", '"q".png', " #not a comment.png", "last.png"]
    chunks = list(iter_chunks(plan, 4))
    assert [c.paths.listed() for c in chunks] == [["a.png", "b.png", "a.png", '"q".png'],
                                                  [" #not a comment.png", "last.png"]]
    assert chunks[0].paths[0] == str(tmp_path / "a.png")


def test_plan_survives_any_file_name_and_big_lists_stream_in_blocks(tmp_path, monkeypatch):
    from compss_infer.run import inputs
    names = ["x\ny.png", '"quoted".png', "plain.png", "é.png"]
    for n in names:
        touch(tmp_path / "i", n)
    plan = make_plan(str(tmp_path / "i"), None, str(tmp_path / "p"))
    assert list(plan.listed()) == sorted(names)
    monkeypatch.setattr(inputs.LineReader, "BLOCK", 7)  # lines cross block boundaries
    lst = tmp_path / "big.txt"
    lst.write_text("".join(f"d/{i}.png\n" for i in range(1000)))
    plan = make_plan(None, str(lst), str(tmp_path / "p2"))
    got = [p for c in iter_chunks(plan, 64, covered=[(10, 500)], first=3) for p in c.paths.listed()]
    assert got == [f"d/{i}.png" for i in list(range(10)) + list(range(500, 1000))]
