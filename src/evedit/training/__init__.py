"""Training: one accelerate loop (:mod:`.loop`) shared by every stage (:mod:`.stages`).

- :func:`run_training` (``evedit train STAGE --config recipe.yaml``): recipe file in, export out;
- :class:`TrainConfig`: the loop's settings; a recipe's ``train:`` section overrides its defaults;
- :func:`train` / :class:`Trainer`: the loop itself, for a stage object built in Python;
- :class:`~evedit.training.stage.Stage`: the contract a stage implements.
"""

from .config import TrainConfig, load_config
from .loop import NonFiniteLoss, Trainer, train
from .run import run_training
from .stage import Stage

__all__ = ["NonFiniteLoss", "Stage", "TrainConfig", "Trainer", "load_config", "run_training", "train"]
