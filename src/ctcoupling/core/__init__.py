"""The foundations every layer may use: the one user-facing error, atomic artifacts and provenance,
CPU kernels pinned for bitwise portability, and the exact minibatch assignment behind batch-OT.

Layer 1 of 8: imports from its own folder and the layers below it (none)."""
