"""The parts of the training engine; the loop itself reads top to bottom in :mod:`isnet.training.loop`.

- :mod:`.config`: what a run is (``TrainConfig``, ``DataConfig``);
- :mod:`.overrides`: ``--set key=value`` on those configs;
- :mod:`.run_folder`: the run folder: checkpoints, resume, damaged files;
- :mod:`.run_state`: what a checkpoint holds beyond weights (CUDA random states, GradScaler, the run as
  started) and what a resume may change;
- :mod:`.metrics_log`: ``metrics.csv``, TensorBoard and the curves.
The data order (a resumable, seeded sample stream) is in :mod:`isnet.data.sampling`.
"""
