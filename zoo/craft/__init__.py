"""CRAFT scene-text detector (Baek et al., CVPR 2019) with EasyOCR's released ``craft_mlt_25k`` weights."""
