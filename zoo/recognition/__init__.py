"""Scene-text recognizers (used to score super-resolution and removal outputs by word accuracy)."""
