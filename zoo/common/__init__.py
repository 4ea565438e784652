"""Pieces shared by every model family's training code (Lightning side)."""
