"""The Data page (AppTest): counts chart, random images with a shuffle, the augmentation preview, one-line errors,
and the Train page's rules for folders."""

from __future__ import annotations

import pytest
from app_util import chart_data, charts, open_page, shown, texts
from datasets_util import have_dataset

from cnn_core.engine import preview


def images(at) -> list[str]:
    return [im.proto.imgs[0].url for im in at.get("image")]  # the url is a hash of the picture


def test_digits_shows_counts_images_and_a_shuffle_that_changes_them():
    at = open_page("data")
    at.selectbox(key="da_dataset").set_value("digits").run()
    assert not at.exception and not at.error
    s = preview.look("digits").summary
    bars = chart_data(charts(at)[0])
    for split in preview.SPLITS:
        assert bars[bars["split"] == split].sort_values("order")["images"].tolist() == s.counts[split]
    assert "1,293 train / 144 val / 360 test" in texts(at)
    assert "**8×8** pixels, **1** channel (grayscale)" in texts(at)
    assert "none of the 360 test or 144 validation images is an exact copy" in texts(at)
    assert "no flips" in texts(at)
    before = images(at)
    assert len(before) == 11 and [im.captions[0] for im in at.get("image")][:10] == s.classes  # 10 rows + 1
    at.button(key="da_shuffle").click().run()
    after = images(at)
    assert len(after) == 11 and all(a != b for a, b in zip(before, after))


def test_a_visitor_has_no_server_path_and_the_operators_bad_path_is_one_line(tmp_path):
    visitor = open_page("data", operator=False)
    assert "folder:…" not in visitor.selectbox(key="da_dataset").options
    at = open_page("data")
    at.selectbox(key="da_dataset").set_value("folder:…").run()
    assert at.info and "Use this folder" in shown(at.info[0])
    at.text_input(key="da_folder").set_value(str(tmp_path / "nowhere"))
    at.button(key="da_folder_use").click().run()
    assert not at.exception and len(at.error) == 1
    assert "does not exist" in shown(at.error[0]) and "\n" not in shown(at.error[0])


def test_absent_cifar10_is_one_line(tmp_path, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    at = open_page("data")
    at.selectbox(key="da_dataset").set_value("cifar10").run()
    assert not at.exception and len(at.error) == 1 and not charts(at)
    assert shown(at.error[0]).startswith("CIFAR-10 not found in") and "\n" not in shown(at.error[0])


@pytest.mark.skipif(not have_dataset("cifar10"), reason="CIFAR-10 not in CNN_DATA_DIR")
def test_cifar10_opens_with_its_split_counts_and_a_shuffle():
    """CIFAR-10 as the trainer splits it (10% of the training images for validation); how long it takes to open
    is measured by the benchmark (python -m bench.first_contact), not here."""
    at = open_page("data")
    assert at.selectbox(key="da_dataset").value == "cifar10" and not at.error
    data = chart_data(charts(at)[0])
    per_split = data.groupby("split")["images"].sum().to_dict()
    assert per_split == {"train": 45_000, "val": 5_000, "test": 10_000}
    before = images(at)
    at.button(key="da_shuffle").click().run()
    assert not at.exception and images(at) != before
