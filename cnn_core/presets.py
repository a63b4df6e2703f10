"""Named recipes: ``train --preset NAME``. Flags given explicitly on top of a preset win."""

from .config import register_preset

# LeNet-5 on MNIST for one epoch: the MNIST demo checkpoint shipped with the app.
register_preset("mnist-lenet5", model="lenet5", dataset="mnist", epochs=1, batch_size=64, optimizer="sgd", lr=0.05,
                momentum=0.9, weight_decay=5e-4, schedule="onecycle")
