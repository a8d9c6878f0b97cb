"""Explaining predictions as mid-level feature effects: one song, many files, every run at once, and the explain stage's figures."""
