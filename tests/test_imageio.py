import numpy as np
import pytest
from PIL import Image

from fcmcore.errors import InputError
from fcmcore.imageio import load_image


def test_every_corpus_file_loads_or_is_refused_clearly(bad_corpus):
    folder, cases = bad_corpus
    assert len(cases) >= 15
    for case in cases:
        path = folder / case.filename
        if case.usable:
            img = load_image(path)
            assert img.mode == "RGB" and min(img.size) >= 2, case.filename
        else:
            with pytest.raises(InputError) as info:
                load_image(path)
            message = str(info.value)
            assert "\n" not in message and case.filename in message, message


def test_exif_rotation_is_applied(bad_corpus):
    folder, _ = bad_corpus
    img = load_image(folder / "exif_rotated.jpg")
    assert img.size == (120, 160)  # stored 160x120, orientation 6 = rotated 90 degrees


def test_sixteen_bit_is_scaled_not_clipped(bad_corpus):
    folder, _ = bad_corpus
    arr = np.asarray(load_image(folder / "gray16.png"))
    assert arr.min() == 0 and arr.max() == 255  # full 16-bit ramp maps onto the full 8-bit range


def test_transparency_goes_on_white(bad_corpus):
    folder, _ = bad_corpus
    arr = np.asarray(load_image(folder / "rgba.png")).astype(int)
    assert arr.mean() > np.asarray(Image.open(folder / "rgba.png").convert("RGB")).mean()


def test_bytes_and_missing_paths(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(InputError, match="empty"):
        load_image(b"", name="upload.png")
