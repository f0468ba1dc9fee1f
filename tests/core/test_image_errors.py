"""An image that cannot be read names its file (class: a PIL error without a path)."""

import pytest
from PIL import Image

from ctxbench.errors import DatasetFormatError
from ctxbench.inputs import ImageRef


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 64*64 > 2x the limit: a "bomb"
    with pytest.raises(DatasetFormatError, match=r"huge\.png: refused as a decompression bomb"):
        ImageRef.from_path(path).load()


@pytest.mark.parametrize("payload", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_corrupt_image_names_the_file(tmp_path, payload):
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    with pytest.raises(DatasetFormatError, match=r"cannot decode image .*bad\.jpg"):
        ImageRef.from_path(path).load()
