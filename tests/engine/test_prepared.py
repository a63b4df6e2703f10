"""A run's training subset: exactly as many images as asked, every class in it, and a one-line refusal when the
subset cannot hold one image per class (scikit-learn's ValueError used to reach the user)."""

import numpy as np
import pytest
import torch

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError, DataError
from cnn_core.data import stratified_split, stratified_subset
from cnn_core.engine.prepared import prepare_data


def cfg(**kw) -> TrainConfig:
    return TrainConfig(model="simple_cnn", dataset="digits", epochs=1, device="cpu", seed=0, **kw)


def test_a_subset_smaller_than_the_classes_is_one_line_naming_the_smallest_that_works():
    with pytest.raises(CnnError, match="train on at least 10 images, so that each of the 10 classes has one") as e:
        prepare_data(cfg(train_subset=3))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("size", [10, 37, 400])
def test_the_subset_has_exactly_the_images_asked_for_and_every_class(size):
    prep = prepare_data(cfg(train_subset=size))
    assert len(prep.y_train) == size
    assert torch.unique(prep.y_train).tolist() == list(range(10))


def test_subsets_and_splits_of_tiny_sets_never_raise_scikit_learns_errors():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assert len(stratified_subset(y, 3, seed=0)) == 3
    assert len(stratified_subset(y, 6, seed=0)) == 6  # one left out: too few to stratify, still exact
    assert stratified_subset(y, 99, seed=0).tolist() == list(range(7))
    keep, held = stratified_split(y, 0.2, seed=0)  # 2 held out < 3 classes: a plain split, not a ValueError
    assert len(keep) + len(held) == 7 and len(held) == 2
    with pytest.raises(DataError, match="cannot hold out"):
        stratified_split(np.array([0]), 0.2, seed=0)
