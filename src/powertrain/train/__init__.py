"""Training, plain PyTorch: no Hydra, no trackers, no files.

- ``tasks``: the ``Task`` interface (batches, loss, evaluate, reached) and ``ClassificationTask``
- ``loop``: ``fit`` (epochs inside "train"/"eval" energy windows, every stop condition) and ``train_step``
- ``optim``: optimizers and schedulers by name

Layer: imports ``data``, ``energy.base`` and ``config``; paradigms and the run build on it.
"""

from powertrain.train.loop import FitResult, FitState, fit, train_step
from powertrain.train.tasks import ClassificationTask, Task, evaluate_split

__all__ = ["ClassificationTask", "FitResult", "FitState", "Task", "evaluate_split", "fit", "train_step"]
