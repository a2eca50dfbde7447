"""ctcoupling: consistency training with better noise-data couplings."""

from . import portable

portable.pin()  # before numpy or torch start: the same CPU kernels on every x86-64 machine

__version__ = "0.1.0"
