"""Which real datasets this machine has (CI: all of them, from ../shared/datasets)."""


def have_dataset(name: str) -> bool:
    from cnn_core.data import data_dir, dataset_info

    return dataset_info(name).locate(data_dir()) is not None
