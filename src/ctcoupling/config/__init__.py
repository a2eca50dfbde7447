"""The experiment design as data: a params file loaded, validated and expanded into experiments, and
the official runs the presets reproduce.

Layer 6 of 8: imports from its own folder and the layers below it (core, data, model, train, measure)."""
