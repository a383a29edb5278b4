"""Helpers for the CNN interpretability labs."""
