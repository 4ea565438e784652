"""Torch-only helpers for model files: padding to a multiple, tiled forwards, eval-mode context."""
