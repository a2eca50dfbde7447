"""Data sets: the toy 2-D sets, scikit-learn's digits and the image sets read from their official files
(imagesets), prepared into the arrays training reads; the small classifier whose features score the digits.

Layer 2 of 8: imports from its own folder and the layers below it (core)."""
