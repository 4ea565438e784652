"""``python tools/score.py ...`` is ``rezoo score ...``: see ``rezoo score --help`` and rezoo/score.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("score")
