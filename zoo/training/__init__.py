"""Lightning training: the base module and its adversarial variant, optimizers and schedules, EMA, losses."""
