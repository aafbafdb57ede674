"""Tests of warmrec.experiments.auto."""
