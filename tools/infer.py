"""``python tools/infer.py ...`` is ``rezoo infer ...``: see ``rezoo infer --help`` and rezoo/infer.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("infer")
