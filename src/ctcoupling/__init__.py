"""ctcoupling: consistency training with better noise-data couplings."""

__version__ = "0.1.0"
