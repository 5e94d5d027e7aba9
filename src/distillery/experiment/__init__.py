"""The closed loop: attack and defence in one run (`distillery experiment`, `make demo`)."""

from distillery.experiment.config import ExperimentConfig
from distillery.experiment.run import Run, run_experiment

__all__ = ["ExperimentConfig", "Run", "run_experiment"]
