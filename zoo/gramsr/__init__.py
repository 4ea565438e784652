"""GramSR: one-step ×4 diffusion super-resolution on a frozen SD-2.1-base with DINOv3 conditioning and
pixel/semantic/texture LoRAs."""
