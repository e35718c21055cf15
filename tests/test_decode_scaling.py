"""Issue 20: large JPEGs decoded at reduced scale only where it cannot change the answer (or when asked).

Real JPEG files made on the fly, real Pillow/libjpeg decoding, the quadrant classifier in a real session.
"""
import json
import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.core.contracts import WorkerSpec
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.images import preprocess
from compss_infer.images.preprocess import Geometry, ImageError, decode
from compss_infer.worker import classify_chunk

GEO = Geometry(64, 64, 3)
# How each EXIF orientation is stored, given the upright picture (the inverse of the display turn).
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth colour structure plus grain: decodes like a photograph, not like a flat fill."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    a = np.stack([127 + 90 * np.sin(rng.uniform(2, 9) * x + c) * np.cos(rng.uniform(2, 9) * y) for c in range(3)], -1)
    return Image.fromarray(np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8))


def save(im: Image.Image, path, **kw) -> str:
    im.save(str(path), **kw)
    return str(path)


def planned_scale(path: str, spec: PreprocessSpec, geo: Geometry = GEO) -> int:
    with Image.open(path) as im:
        return preprocess._dct_scale(im, spec, geo, preprocess._orientation(im, spec))


def test_dct_scaling_only_where_the_image_stays_4x_the_target(tmp_path):
    big = save(photo(1600, 1200), tmp_path / "big.jpg", quality=90)
    small = save(photo(300, 240), tmp_path / "small.jpg", quality=90)
    png = save(photo(1600, 1200), tmp_path / "big.png")
    safe, fast, full = PreprocessSpec(), PreprocessSpec(decode="fast"), PreprocessSpec(decode="full")
    # 1600x1200 to 64x64: safe keeps 4x (256): 1/4 gives 400x300, 1/8 would give 200x150; fast keeps 1x
    assert planned_scale(big, safe) == 4 and planned_scale(big, fast) == 8 and planned_scale(big, full) == 1
    assert planned_scale(big, replace(safe, crop=0.5)) == 2  # the crop fraction counts: 800x600 -> 1/2
    assert planned_scale(big, replace(safe, resize="nearest")) == 1  # nearest means pixels, not averages
    assert planned_scale(small, safe) == 1  # 300x240: 1/2 would be 150x120, under 256
    assert planned_scale(small, fast) == 2  # fast goes down to the target: 150x120 >= 64
    assert planned_scale(png, safe) == 1 and planned_scale(png, fast) == 1  # no DCT in PNG
    # where nothing is shrunk the pixels are exactly the full decode's; where something is, nearly
    for path in (small, png):
        assert np.array_equal(decode(path, safe, GEO), decode(path, full, GEO))
    for path in (big, png):
        for crop in (1.0, 0.6):
            ref = decode(path, replace(full, crop=crop), GEO).astype(np.int16)
            for spec, limit in ((safe, 1.0), (fast, 3.0)):
                got = decode(path, replace(spec, crop=crop), GEO).astype(np.int16)
                assert got.shape == ref.shape and np.abs(got - ref).mean() < limit, (path, crop, spec.decode)


def quadrant_photo(quadrant: int, w: int, h: int) -> Image.Image:
    """A large photo whose brightest quadrant is ``quadrant`` (the quadrant classifier's class)."""
    arr = np.asarray(photo(w, h), np.float32) * 0.4
    r, c = divmod(quadrant, 2)
    arr[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2] += 140
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_exif_rotated_large_jpeg_gives_the_class_of_its_upright_twin(tmp_path):
    upright = quadrant_photo(1, 1280, 960)  # brightest: top right; any wrong turn moves it elsewhere
    paths = [save(upright, tmp_path / "upright.jpg", quality=92)]
    for orientation, turn in STORED.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = upright.transpose(turn) if turn is not None else upright
        paths.append(save(stored, tmp_path / f"o{orientation}.jpg", quality=92, exif=exif.tobytes()))
    geo, spec = Geometry(16, 16, 3), PreprocessSpec(crop=0.9)
    assert all(planned_scale(p, spec, geo) == 8 for p in paths)  # all take the scaled path
    ref = decode(paths[0], replace(spec, decode="full"), geo).astype(np.int16)
    for p in paths[1:]:
        assert np.abs(decode(p, spec, geo).astype(np.int16) - ref).mean() < 2.0, p
    model = tm.write_graph(tm.quadrant_graph(16, 16, 3), str(tmp_path / "q.pb"))
    ws = WorkerSpec(model=ModelSpec(path=model), preprocess=spec, session=SessionSpec(), batch_size=4,
                    default_threads=1)
    res = classify_chunk(ws, paths)
    assert res.errors == {} and res.class_ids.tolist() == [1] * len(paths)
    off = classify_chunk(replace(ws, preprocess=replace(spec, exif_transpose=False)), paths)
    assert set(off.class_ids.tolist()) != {1}  # the test can fail: unturned, the bright quadrant moves


def jpeg_with_header(real_jpeg: bytes, width: int, height: int) -> bytes:
    """``real_jpeg`` with its SOF claiming ``width`` x ``height`` (the data is not for that size)."""
    i = real_jpeg.index(b"\xff\xc0")
    return real_jpeg[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + real_jpeg[i + 9:]


@pytest.mark.parametrize("mode", ["safe", "fast", "full"])
def test_pixel_limit_still_refuses_before_decoding(tmp_path, mode):
    real = save(photo(1200, 900), tmp_path / "real.jpg", quality=85)
    forged = tmp_path / "forged.jpg"
    forged.write_bytes(jpeg_with_header(open(real, "rb").read(), 60000, 50000))
    with pytest.raises(ImageError) as exc:
        decode(str(forged), PreprocessSpec(decode=mode), GEO)  # decoding it would fail differently
    assert exc.value.row_text() == ("DecompressionBomb: 60000x50000 = 3000000000 pixels exceeds "
                                    "preprocess.max_pixels=89478485")
    with pytest.raises(ImageError) as exc:
        decode(real, PreprocessSpec(decode=mode, max_pixels=1_000_000), GEO)
    assert exc.value.kind == "DecompressionBomb"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(open(real, "rb").read()[:5000])  # truncated: the same error row in every mode
    rows = []
    for m in (mode, "full"):
        with pytest.raises(ImageError) as exc:
            decode(str(cut), PreprocessSpec(decode=m), GEO)
        rows.append(exc.value.row_text())
    assert rows[0] == rows[1] and rows[0].startswith("DecodeError: OSError: image file is truncated")


def test_fast_decode_says_so_once(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for q in range(4):
        save(quadrant_photo(q, 1024, 768), folder / f"{q}.jpg", quality=90)
    model = tm.write_graph(tm.quadrant_graph(16, 16, 3), str(tmp_path / "q.pb"))
    outs = {}
    for mode in ("safe", "fast"):
        out = str(tmp_path / f"{mode}.csv")
        capsys.readouterr()
        assert main(["run", "--no-progress", "--engine", "sequential", "--model", model, "--images", str(folder),
                     "--output", out, "--set", "preprocess.std=1", "--set", f"preprocess.decode={mode}"]) == 0
        said = [line for line in capsys.readouterr().err.splitlines() if "preprocess.decode=fast" in line]
        warnings = json.load(open(out + ".summary.json"))["warnings"]
        outs[mode] = open(out).read().splitlines()
        if mode == "fast":
            assert len(said) == 1 and "a class can differ from a full decode" in said[0]
            assert warnings == [said[0].removeprefix("compss-infer: ")]
        else:
            assert said == [] and warnings == []
    assert [r.split(",")[1] for r in outs["fast"][1:]] == ["0", "1", "2", "3"]
    assert [r.split(",")[1] for r in outs["safe"][1:]] == ["0", "1", "2", "3"]
    assert main(["run", "--no-progress", "--engine", "sequential", "--model", model, "--images", str(folder),
                 "--output", str(tmp_path / "x.csv"), "--set", "preprocess.decode=quick"]) == 2
    assert "preprocess.decode" in capsys.readouterr().err
    assert os.path.exists(out)
