"""Tests of warmrec.transfer."""
