"""What the runs mean: statistics over seeds, claims and their verdicts, training curves, the pilot,
figures, tables, DVC's plot data, and the audit against the published numbers.

Layer 7 of 8: imports from its own folder and the layers below it (core, data, model, train, measure, config)."""
