"""cnn_core: datasets, a model zoo, a fast training engine, checkpoints, evaluation and prediction.

Free of any UI: the Streamlit app, the command line and a GPU server all drive the same functions.
"""

from .config import TrainConfig
from .errors import CheckpointError, CnnError, DataError, ImageError

__all__ = ["TrainConfig", "CnnError", "DataError", "ImageError", "CheckpointError"]
__version__ = "0.1.0"
