"""Data problems name the file and the fix (issue 26): unlistable folders, unreadable images, decompression
bombs, .npz headers that claim absurd sizes, label arrays of the wrong shape, a dataset cache that can't be written."""
import errno
import io
import os
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from ditlab.data import load_dataset


def _png(size=(4, 4)):
    buf = io.BytesIO()
    Image.new("L", size, 128).save(buf, format="PNG")
    return buf.getvalue()


def _folder(tmp_path):
    root = tmp_path / "pics"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            (root / c / f"{i}.png").write_bytes(_png())
    return root


def test_a_class_folder_that_cannot_be_listed_is_refused_not_skipped(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith(os.sep + "b"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match=r"cannot list the folder .*pics/b.*Permission denied.*chmod"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def test_an_image_that_cannot_be_read_names_the_file(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    real = type(root).read_bytes

    def read_bytes(self):
        if self.name == "1.png" and self.parent.name == "b":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(type(root), "read_bytes", read_bytes)
    with pytest.raises(ValueError, match=r"cannot read image 'b/1.png' \(Permission denied\); check its permissions"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def test_a_decompression_bomb_is_refused_naming_the_image(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    (root / "a" / "big.png").write_bytes(_png((64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 = 4096 pixels: a "bomb" at this limit
    with pytest.raises(ValueError, match=r"image 'a/big.png' is too large to decode safely .*4096"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def _npz_with_header(path, key, header_shape, payload=b"\0" * 16, labels=None):
    """An .npz whose `key` member's .npy header claims `header_shape` of uint8 but holds `payload`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": header_shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{key}.npy", buf.getvalue() + payload)  # magic + header, then far fewer bytes than claimed
        lab = io.BytesIO()
        np.save(lab, np.zeros(4, np.int64) if labels is None else labels)
        z.writestr("y_train.npy", lab.getvalue())
    return path


def test_an_npz_header_that_claims_absurd_sizes_is_refused_before_allocating(tmp_path):
    path = _npz_with_header(tmp_path / "bomb.npz", "x_train", (10**9, 28, 28))
    with pytest.raises(ValueError, match=r"bomb.npz x_train: the header claims shape \(1000000000, 28, 28\) .* "
                                         r"but the file holds \d+ bytes; the file is corrupt"):
        load_dataset(path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("labels", [np.zeros(3, np.int64), np.zeros((4, 2), np.int64)], ids=["short", "2d"])
def test_labels_of_the_wrong_length_or_shape_name_the_file_and_the_expected_shape(tmp_path, labels):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=labels)
    with pytest.raises(ValueError, match=re.escape(f"d.npz y_train: labels must have shape (4,), one per image of "
                                                   f"x_train, got {tuple(labels.shape)}")):
        load_dataset(path, cache_dir=tmp_path / "cache")


def test_labels_of_shape_n_by_1_are_accepted(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([[0], [1], [0], [1]]))
    assert load_dataset(path, cache_dir=tmp_path / "cache").labels.tolist() == [0, 1, 0, 1]


def test_a_cache_that_cannot_be_written_leaves_nothing_and_the_data_is_used(tmp_path, monkeypatch):
    root = _folder(tmp_path)

    def full_disk(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("ditlab.io.files.save_file", full_disk)
    with pytest.warns(UserWarning, match=r"could not write the dataset cache .*No space left.*without the cache"):
        ds = load_dataset(root, cache_dir=tmp_path / "cache")
    assert len(ds) == 4 and ds.num_classes == 2
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()], "a half-written cache was left behind"
