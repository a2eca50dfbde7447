"""The pipeline: the DAG shared by Snakemake and DVC, the stages that wire files to the layers
below, and `describe`.

Layer 8 of 8: imports from its own folder and the layers below it (core, data, model, train, measure, config, results)."""
