"""The batch engine must give what a straightforward per-image torchvision pipeline gives."""

import torch
import torchvision.transforms.functional as TF

from cnn_core.engine.batches import Augment, Batches, Normalize, flip_batch, shift_batch


def test_shift_equals_per_image_pad_and_crop():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    dy, dx = torch.randint(0, 9, (16,)), torch.randint(0, 9, (16,))
    got = shift_batch(x, 4, dy, dx)
    for i in range(16):
        ref = TF.crop(TF.pad(x[i], [4]), int(dy[i]), int(dx[i]), 32, 32)
        assert torch.equal(got[i], ref)


def test_flip_equals_per_image_hflip():
    x = torch.randint(0, 256, (8, 1, 5, 7), dtype=torch.uint8)
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    got = flip_batch(x, mask)
    for i in range(8):
        assert torch.equal(got[i], TF.hflip(x[i]) if mask[i] else x[i])


def test_augment_only_moves_pixels_and_varies_per_image():
    x = torch.arange(4 * 4 * 4, dtype=torch.int64).view(1, 1, 8, 8).repeat(64, 1, 1, 1).to(torch.uint8)
    out = Augment(pad=2, flip=True)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert len({tuple(o.flatten().tolist()) for o in out}) > 10  # different shifts/flips per image
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0}


def test_normalize_equals_to_tensor_and_normalize():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    got = Normalize(mean, std, 32)(x)
    for i in range(4):
        ref = TF.normalize(TF.to_tensor(x[i].permute(1, 2, 0).numpy()), mean, std)
        assert torch.allclose(got[i], ref, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_normalize_resizes_to_model_size():
    x = torch.full((2, 1, 8, 8), 128, dtype=torch.uint8)
    out = Normalize((0.5,), (0.5,), 32)(x)
    assert out.shape == (2, 1, 32, 32) and torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.5))


def test_batches_cover_every_image_once_and_reshuffle_per_epoch():
    x = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1)
    y = torch.arange(103)
    b = Batches(x, y, 10, Normalize((0.0,), (1 / 255,), 1, channels_last=False), shuffle=True, seed=5)
    assert len(b) == 11
    seen = torch.cat([yb for _, yb in b])
    assert sorted(seen.tolist()) == list(range(103))
    first = seen.clone()
    b.set_epoch(1)
    second = torch.cat([yb for _, yb in b])
    assert not torch.equal(first, second)
    b.set_epoch(0)
    assert torch.equal(torch.cat([yb for _, yb in b]), first)  # same epoch, same order: resumable
    for xb, yb in b:  # images stay paired with their labels
        assert torch.equal(xb.flatten().round().long(), yb)


def test_training_batches_drop_a_trailing_single_image():
    x = torch.zeros(21, 1, 2, 2, dtype=torch.uint8)
    b = Batches(x, torch.zeros(21, dtype=torch.long), 10, Normalize((0.0,), (1.0,), 2), drop_single=True)
    assert [len(yb) for _, yb in b] == [10, 10]


def test_small_predictions_run_on_one_thread_and_restore_the_pool_size():
    """A few photos run their forward pass on one thread (the JPEG decoder has both cores just before, see
    inference.SMALL_BATCH); a big batch keeps the pool; the pool size is restored either way."""
    import numpy as np
    from PIL import Image
    from torch import nn

    from cnn_core.evaluation.predictor import SMALL_BATCH, Predictor

    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return torch.zeros(len(x), 2)

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p = Predictor(Spy(), ["a", "b"], 8, 3, [0.5] * 3, [0.25] * 3, True, "spy")
        photo = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
        assert p.probabilities([photo]).shape == (1, 2)
        assert seen == [1] and torch.get_num_threads() == 2  # mirror and image in one pass, pool size restored
        p.probabilities([photo] * (SMALL_BATCH + 1))
        assert seen[-1] == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


def test_a_gpu_fp16_run_is_evaluated_on_the_cpu_the_cpus_way():
    import pytest

    from cnn_core.core.errors import CnnError
    from cnn_core.engine.device import inference_precision, pick_precision

    cpu = torch.device("cpu")
    with pytest.raises(CnnError, match="fp16 training needs a CUDA GPU"):
        pick_precision("fp16", cpu)  # training with fp16 on a CPU stays refused
    assert inference_precision("fp16", cpu) == pick_precision("auto", cpu)
    assert inference_precision("fp32", cpu) is None
