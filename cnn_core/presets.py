"""Named recipes: ``train --preset NAME``. Flags given explicitly on top of a preset win."""

from .config import register_preset

# LeNet-5 on MNIST for one epoch: the MNIST demo checkpoint shipped with the app.
register_preset("mnist-lenet5", model="lenet5", dataset="mnist", epochs=1, batch_size=64, optimizer="sgd", lr=0.05,
                momentum=0.9, weight_decay=5e-4, schedule="onecycle")

# FastNet on CIFAR-10 in minutes on a 2-core CPU (figures measured in the README). Batch-level crop (2 px) and
# flip, label smoothing, a one-cycle schedule and flip test-time augmentation; a small validation split so
# that nearly all 50,000 images train.
register_preset("cifar10-fast", model="fastnet", dataset="cifar10", epochs=8, batch_size=512, optimizer="sgd",
                lr=0.75, momentum=0.85, weight_decay=1.3e-3, schedule="onecycle", label_smoothing=0.2,
                augment=True, crop_padding=2, tta=True, val_fraction=0.04, precision="auto")
