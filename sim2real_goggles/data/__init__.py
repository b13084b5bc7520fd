"""Data: collecting rendered datasets and reading image domains (profiles, folders)."""
