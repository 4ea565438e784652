"""Datamodules following the batch contract of DESIGN.md (image/target/mask/name/boxes ...)."""

import zoo._compat as _compat

_compat.ensure_torchvision_importable()  # albumentations/kornia may import torchvision
