"""torch.hub entrypoints: one per registered model.

    model = torch.hub.load("<owner>/rezoo", "deeperaser", pretrained=True, trust_repo=True)
    model = torch.hub.load("/path/to/rezoo", "deeperaser", source="local", pretrained="/path/deeperaser.pth")

Imports torch and the zoo's model files only (no Lightning, no Hydra).
"""

from zoo import create_model as _create_model
from zoo import list_models as _list_models
from zoo.registry import registration as _registration

dependencies = ["torch", "safetensors", "yaml", "numpy", "cv2"]  # cv2: CRAFT's box post-processing


def _make_entrypoint(name: str):
    def entrypoint(pretrained=False, progress=True, **kwargs):
        return _create_model(name, pretrained=pretrained, progress=progress, **kwargs)

    entry = _registration(name)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (
        f"{(entry.builder.__doc__ or name).strip()}\n\n"
        f"pretrained: False, True (default tag {entry.info.default_tag!r}), a manifest tag, a URL or a local file\n"
        "(official release, exported safetensors or Lightning checkpoint). kwargs override architecture arguments."
    )
    return entrypoint


for _name in _list_models():
    globals()[_name] = _make_entrypoint(_name)
