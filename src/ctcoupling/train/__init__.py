"""Training: how a pair (x, z) is formed (couplings), the objectives (iCT, ECT, sCT, sCD-exact),
optimiser and EMA, the per-sample randomness, the loop and its log.

Layer 4 of 8: imports from its own folder and the layers below it (core, data, model)."""
