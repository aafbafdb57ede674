"""Studies: lists of runs over one scenario (:mod:`warmrec.experiments.scenarios`)."""
