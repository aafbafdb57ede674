"""tests of warmrec.experiments.studies."""
