"""load_image: every kind of input a scraped dataset contains becomes RGB or a clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from drfhq_lib.errors import BadImageError
from drfhq_lib.data.images import list_images, load_image, to_rgb

from conftest import DATA


def _gradient(width=40, height=24):
    """An RGB picture whose orientation is easy to check: red grows to the right."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 60)], -1).astype(np.uint8))


def test_rgb_jpeg_loads_unchanged():
    image = load_image(DATA / "obama.jpg")
    assert image.mode == "RGB" and image.size == (384, 480)


def test_bytes_and_file_objects_load():
    data = (DATA / "biden.jpg").read_bytes()
    assert load_image(data).size == load_image(io.BytesIO(data)).size == (211, 480)


def test_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    data = (DATA / "obama.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="cut.jpg.*(corrupt|truncated)"):
        load_image(path)


def test_text_file_named_png_is_refused(tmp_path):
    path = tmp_path / "page.png"
    path.write_text("<html>Forbidden</html>")
    with pytest.raises(BadImageError, match="page.png.*not an image"):
        load_image(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(BadImageError, match="no such file"):
        load_image(tmp_path / "nothing.png")


def test_grayscale_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    _gradient().convert("L").save(path)
    array = np.asarray(load_image(path))
    assert array.shape == (24, 40, 3)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_rgba_is_composited_on_white_or_alpha_dropped(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere, fully transparent on the left half
    rgba[:, 4:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    white = np.asarray(load_image(path))
    assert (white[:, :4] == 255).all()  # transparent -> white background
    assert (white[:, 4:] == [200, 0, 0]).all()
    dropped = np.asarray(load_image(path, alpha="drop"))
    assert (dropped == [200, 0, 0]).all()


def test_palette_with_and_without_transparency(tmp_path):
    palette = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").mode == "RGB"
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pt.png", transparency=0)
    assert load_image(tmp_path / "pt.png").mode == "RGB"


def test_16bit_png_is_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], np.uint16).repeat(4, 0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    array = np.asarray(load_image(path))
    assert array.shape == (4, 3, 3)
    assert list(array[0, :, 0]) == [0, 128, 255]


def test_float_and_int32_images():
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32))))[0, 0, 0] == 128
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 77, np.int32))))[0, 0, 0] == 77


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    array = np.asarray(load_image(path)).astype(int)
    assert array.shape == (16, 16, 3)
    assert array[8, 8, 0] > 200 and array[8, 8, 1] < 60 and array[8, 8, 2] < 60


@pytest.mark.parametrize("orientation, transpose", [
    (6, Image.Transpose.ROTATE_270),  # stored turned left: a viewer turns it 90 deg clockwise
    (8, Image.Transpose.ROTATE_90),
])
def test_exif_orientation_is_applied(tmp_path, orientation, transpose):
    stored = _gradient()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (24, 40)  # width and height swapped
    expected = np.asarray(stored.transpose(transpose), np.int16)
    assert np.abs(np.asarray(loaded, np.int16) - expected).mean() < 4


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(BadImageError, match="300x200.*max_pixels"):
        load_image(path, max_pixels=50_000)
    assert load_image(path, max_pixels=60_000).size == (300, 200)


def test_pillow_bomb_limit_becomes_bad_image(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2x this
    with pytest.raises(BadImageError, match="huge.png.*decompression bomb"):
        load_image(path, max_pixels=None)


def test_list_images_keeps_images_only(tmp_path):
    for name in ["b.png", "a.JPG", ".hidden.png", "notes.txt", "x.png.part"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
