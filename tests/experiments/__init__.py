"""Tests of warmrec.experiments."""
