"""ctcoupling: consistency training with better noise-data couplings."""

import warnings

from ctcoupling.core import portable

# pynvml 13 (a dependency of dvclive) is a shim that warns on import, which torch.cuda does in every job
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)

portable.pin()  # before numpy or torch start: the same CPU kernels on every x86-64 machine

__version__ = "0.1.0"
