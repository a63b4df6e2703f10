"""Layer 2: datasets. Importing this package registers the built-in datasets and ``folder:PATH``."""

from . import builtin, folders  # noqa: F401  (registration side effect)
from .registry import (
    Dataset,
    channel_stats,
    check_dataset_name,
    data_dir,
    dataset_choices,
    dataset_info,
    dataset_present,
    dataset_table,
    is_photo_dataset,
    list_datasets,
    load_dataset,
    photo_preparation,
    register_dataset,
    register_prefix,
    stratified_split,
    stratified_subset,
)
from .roots import folder_datasets, resolve_under_roots

__all__ = ["Dataset", "channel_stats", "check_dataset_name", "data_dir", "dataset_choices", "dataset_info",
           "dataset_present", "dataset_table", "folder_datasets", "is_photo_dataset", "list_datasets", "load_dataset",
           "photo_preparation", "register_dataset",
           "register_prefix", "resolve_under_roots", "stratified_split", "stratified_subset"]
