"""Training pipeline for stereonet_ros (PyTorch Lightning).

Modules (import them explicitly; this package import stays light):

- ``stereonet_ros.tools.synthetic``: procedural stereo scenes with exact disparity (no download);
- ``training.datasets`` / ``training.transforms``: SceneFlow, KITTI, Middlebury, folder, synthetic;
- ``training.loss``: Barron's general robust loss;
- ``training.module`` / ``training.datamodule``: LightningModule / LightningDataModule;
- ``training.cli``: the ``stereonet-train`` command (fit / validate / test / export);
- ``training.measure``: re-measures the numbers of the shipped model card.

The network itself lives in ``stereonet_ros.model`` and is never redefined here.
"""
