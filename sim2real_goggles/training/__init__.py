"""Trainers (segmenter now; translators and policies follow)."""
