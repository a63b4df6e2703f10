"""Layer 3: devices and precision, on-device batches and augmentation, prepared data, forward passes and
distributed training."""
