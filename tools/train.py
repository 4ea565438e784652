"""``python tools/train.py ...`` is ``rezoo train ...``: see ``rezoo train --help`` and rezoo/train.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("train")
