"""Measurements of trained models and data: sample distances (W2, energy, Frechet), sample quality
through torch-fidelity, and the GC papers' theory (exact discrepancy, transport cost) on trained runs.

Layer 5 of 8: imports from its own folder and the layers below it (core, data, model, train)."""
