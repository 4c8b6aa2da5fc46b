"""Training, plain PyTorch: no Hydra, no trackers, no files.

- ``tasks``: the ``Task`` interface (batches, loss, evaluate, reached), ``ClassificationTask`` and
  ``SupervisedTask`` (the user's own loss and evaluation; ``make_task`` builds the one ``task.*`` names)
- ``loop``: ``fit`` (epochs inside "train"/"eval" energy windows, every stop condition) and ``train_step``
- ``optim``: optimizers and schedulers by name

Layer: imports ``data``, ``energy.base`` and ``config``; paradigms and the run build on it.
"""

from powertrain.train.loop import FitResult, FitState, fit, train_step
from powertrain.train.tasks import ClassificationTask, SupervisedTask, Task, evaluate_split, make_task

__all__ = ["ClassificationTask", "FitResult", "FitState", "SupervisedTask", "Task", "evaluate_split", "fit", "make_task",
           "train_step"]
