"""TextDiff: scene-text super-resolution with a text enhancement module and mask-guided residual diffusion."""
