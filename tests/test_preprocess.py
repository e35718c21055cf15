import numpy as np
import pytest
from PIL import Image

from compss_infer.core.specs import PreprocessSpec
from compss_infer.images.preprocess import Geometry, ImageError, decode, normalize


def save(tmp_path, arr, name="x.png", mode=None, **kw):
    p = str(tmp_path / name)
    Image.fromarray(arr, mode).save(p, **kw) if mode else Image.fromarray(arr).save(p, **kw)
    return p


def test_modes_resize_and_bgr(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    p = save(tmp_path, rgb)
    out = decode(p, PreprocessSpec(mode="RGB"), Geometry(4, 6, 3))
    assert out.shape == (4, 6, 3) and out[0, 0].tolist() == [10, 20, 30]
    bgr = decode(p, PreprocessSpec(mode="BGR"), Geometry(2, 3, 3))
    assert bgr.shape == (2, 3, 3) and bgr[0, 0].tolist() == [30, 20, 10]
    gray = decode(p, PreprocessSpec(mode="L"), Geometry(4, 6, 1))
    assert gray.shape == (4, 6, 1)
    assert gray[0, 0, 0] == round(10 * 299 / 1000 + 20 * 587 / 1000 + 30 * 114 / 1000)


def test_central_crop_then_resize(tmp_path):
    arr = np.zeros((10, 10), np.uint8)
    arr[3:7, 3:7] = 200  # a bright centre
    p = save(tmp_path, arr, mode="L")
    full = decode(p, PreprocessSpec(mode="L", resize="nearest"), Geometry(2, 2, 1))
    crop = decode(p, PreprocessSpec(mode="L", resize="nearest", crop=0.4), Geometry(2, 2, 1))
    assert crop.min() == 200 and full.min() == 0


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((2, 4), np.uint8)
    arr[:, :2] = 255  # left half bright, 2 rows x 4 cols
    im = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = str(tmp_path / "r.jpg")
    im.save(p, exif=exif.tobytes(), quality=100)
    on = decode(p, PreprocessSpec(mode="L"), Geometry(4, 2, 1))
    off = decode(p, PreprocessSpec(mode="L", exif_transpose=False), Geometry(2, 4, 1))
    assert on.shape[:2] == (4, 2) and off.shape[:2] == (2, 4)
    assert on[0, :, 0].mean() > 200 and on[-1, :, 0].mean() < 50  # left half became the top


def test_normalize_mean_std_per_channel():
    batch = np.full((2, 1, 1, 3), 100, np.uint8)
    out = normalize(batch, PreprocessSpec(mean=(100.0, 50.0, 0.0), std=(1.0, 2.0, 4.0)), np.float32)
    assert out.dtype == np.float32 and out[0, 0, 0].tolist() == [0.0, 25.0, 25.0]
    assert normalize(batch, PreprocessSpec(), np.uint8) is batch


def test_errors_are_image_errors_with_kinds(tmp_path):
    geo = Geometry(4, 4, 1)
    spec = PreprocessSpec(mode="L")
    with pytest.raises(ImageError) as e:
        decode(str(tmp_path / "missing.png"), spec, geo)
    assert e.value.kind == "NotFound"
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as e:
        decode(str(tmp_path / "empty.png"), spec, geo)
    assert e.value.kind == "EmptyFile"
    (tmp_path / "text.jpg").write_text("hello, not an image")
    with pytest.raises(ImageError) as e:
        decode(str(tmp_path / "text.jpg"), spec, geo)
    assert e.value.kind == "UnsupportedFormat" and e.value.row_text().startswith("UnsupportedFormat: ")
