"""cnn_core: datasets, a model zoo, a fast training engine, checkpoints, evaluation and prediction.

Free of any UI: the Streamlit app, the command line and a GPU server all drive the same functions. The layers
(each imports only those below it; `make test` checks it): core, config | imaging, data | models,
engine | runs, training | evaluation, workflows, cli | jobs.
"""

from .config.train_config import TrainConfig
from .core.errors import CheckpointError, CnnError, DataError, ImageError
from .core.version import __version__

__all__ = ["TrainConfig", "CnnError", "DataError", "ImageError", "CheckpointError", "__version__"]
