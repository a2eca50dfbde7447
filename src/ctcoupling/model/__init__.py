"""The consistency model: forward kernels and the boundary-condition parametrisation (VE, TrigFlow),
the networks (MLP, SongUNet, EDM2), published weights, and sampling from a trained model.

Layer 3 of 8: imports from its own folder and the layers below it (core, data)."""
