"""Looking at a dataset before training: counts are the trainer's split, statistics are numpy's, the duplicate
check finds planted copies and nothing on a clean split, and the augmentation preview is the trainer's own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnn_core.data.inspect import SMALL_SHARE, class_counts, copies, image_hashes, pick_per_class, sheet, small_classes
from cnn_core.engine import batches, preview


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of random 16x16 colour PNGs (lossless: the decoded pixels are the written ones): 20, 20 and 6."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for name, n in (("apples", 20), ("pears", 20), ("plums", 6)):
        (root / name).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits():
    return preview.look("digits")


def test_counts_are_the_trainers_split_and_the_small_class_is_flagged(photos):
    lk = preview.look(f"folder:{photos}")
    s = lk.summary
    for split in preview.SPLITS:
        y = lk.prep.split(split)[1].numpy()
        assert s.counts[split] == np.bincount(y, minlength=3).tolist()
        assert sum(s.counts[split]) == len(y)
    assert s.classes == ["apples", "pears", "plums"]
    assert s.counts["train"][2] < SMALL_SHARE * np.median(s.counts["train"])
    assert s.small == ["plums"] and "median" in s.small_rule
    assert small_classes([10, 10, 10], ["a", "b", "c"]) == []


def test_digits_counts_match_the_split_sizes(digits):
    s = digits.summary
    assert [sum(s.counts[k]) for k in preview.SPLITS] == [len(digits.prep.split(k)[1]) for k in preview.SPLITS]
    assert sum(sum(c) for c in s.counts.values()) == 1797 and s.small == []
    assert (s.height, s.width, s.channels) == (8, 8, 1)


def test_statistics_equal_numpys(photos):
    lk = preview.look(f"folder:{photos}")
    x = lk.prep.x_train.numpy().astype(np.float64) / 255  # (N, C, H, W)
    assert lk.summary.mean == pytest.approx(x.mean(axis=(0, 2, 3)).tolist(), abs=1e-6)
    assert lk.summary.std == pytest.approx(x.std(axis=(0, 2, 3)).tolist(), abs=1e-6)
    assert lk.summary.channels == 3


def test_the_duplicate_check_finds_planted_copies_and_nothing_on_a_clean_split():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (500, 3, 7, 5), dtype=np.uint8)  # 105 bytes: not a whole number of words
    test = rng.integers(0, 256, (100, 3, 7, 5), dtype=np.uint8)
    assert copies(train, test) == []
    test[[4, 50, 99]] = train[[10, 0, 499]]
    assert copies(train, test) == [(4, 10), (50, 0), (99, 499)]
    near = train[7].copy()
    near[0, 0, 0] ^= 1  # one bit off is not a copy
    assert copies(train, near[None]) == []
    assert len(set(image_hashes(train).tolist())) == 500


def test_a_collision_is_not_reported_as_a_copy(monkeypatch):
    from cnn_core.data import inspect

    monkeypatch.setattr(inspect, "image_hashes", lambda x: np.zeros(len(x), dtype=np.uint64))  # all collide
    a = np.zeros((3, 1, 2, 2), np.uint8)
    b = np.ones((2, 1, 2, 2), np.uint8)
    b[1] = 0
    assert inspect.copies(a, b) == [(1, 0)]


def test_a_split_with_copies_is_reported(photos, tmp_path):
    """The same photo in a class's train/ and test/ folders: the summary counts it."""
    for part in ("train", "val", "test"):
        for c in ("apples", "pears"):
            (tmp_path / part / c).mkdir(parents=True)
            for i in range(4):
                src = photos / c / f"{i if part == 'train' else i + 10}.png"
                Image.open(src).save(tmp_path / part / c / f"{i}.png")
    Image.open(photos / "apples" / "0.png").save(tmp_path / "test" / "apples" / "copy.png")
    Image.open(photos / "pears" / "1.png").save(tmp_path / "test" / "pears" / "copy.png")
    s = preview.look(f"folder:{tmp_path}").summary
    assert s.copies == {"test": 2, "val": 0} and len(s.examples) == 2
    assert "2 test and 0 val images also in train" in s.line()


def test_samples_are_seeded_per_class(digits):
    a, b, c = (preview.samples(digits, 4, seed) for seed in (0, 0, 1))
    assert len(a) == 10 and all(len(r) == 4 for r in a)
    assert all(np.array_equal(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    assert not all(np.array_equal(x, y) for ra, rc in zip(a, c) for x, y in zip(ra, rc))
    y = digits.prep.y_train.numpy()
    assert all((y[row] == k).all() for k, row in enumerate(pick_per_class(y, 10, 4, 0)))
    assert class_counts(np.array([0, 2, 2]), 4) == [1, 0, 2, 0]


def test_the_augmentation_preview_is_the_trainers_own(digits, monkeypatch):
    calls = []
    real = batches.Augment.__call__

    def recording(self, x, gen, *where):  # where: the images' indices, the epoch and the seed
        out = real(self, x, gen, *where)
        calls.append((self, out.clone()))
        return out

    monkeypatch.setattr(batches.Augment, "__call__", recording)
    rows = preview.augment_preview(digits, 3, 5, seed=0)
    assert len(calls) == 5 and all(aug is digits.prep.augment for aug, _ in calls)
    assert all(np.array_equal(rows[i][1 + d], calls[d][1][i].numpy()) for i in range(3) for d in range(5))
    assert any(not np.array_equal(r[0], v) for r in rows for v in r[1:])  # it changes the images


def test_the_augmentation_preview_is_deterministic_per_seed(digits):
    a, b, c = (preview.augment_preview(digits, 4, 3, seed) for seed in (5, 5, 6))
    assert all(np.array_equal(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    assert not all(np.array_equal(x, y) for ra, rc in zip(a, c) for x, y in zip(ra, rc))
    assert len(a) == 4 and all(len(r) == 4 and r[0].dtype == np.uint8 for r in a)
    assert "no flips" in preview.augmentation_text(digits)  # a mirrored digit is another digit


def test_a_sheet_is_a_picture_of_every_image():
    rows = [[np.full((1, 8, 8), 255, np.uint8)] * 3, [np.zeros((3, 8, 8), np.uint8)]]
    im = sheet(rows, cell=32, gap=2)
    assert im.shape == (2 + 2 * 34, 2 + 3 * 34, 3) and im.dtype == np.uint8
    assert (im[2:34, 2:34] == 255).all() and (im[36:68, 2:34] == 0).all()
