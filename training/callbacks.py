"""Small Lightning callbacks used by the training configs."""
from __future__ import annotations

import os

import lightning.pytorch as pl


class FinalCheckpoint(pl.Callback):
    """Write ``dirpath/filename`` when fitting ends for any reason that returns normally
    (max_steps, max_time, early stop), so a wall-time bounded run keeps its last steps.

    ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it saves for another
    trigger, so a run stopped by ``max_time`` could otherwise lose up to one save interval.
    """

    def __init__(self, dirpath: str, filename: str = "final.ckpt") -> None:
        super().__init__()
        self.dirpath = dirpath
        self.filename = filename

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        os.makedirs(self.dirpath, exist_ok=True)
        trainer.save_checkpoint(os.path.join(self.dirpath, self.filename))
