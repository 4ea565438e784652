"""``python tools/eval.py ...`` is ``rezoo eval ...``: see ``rezoo eval --help`` and rezoo/eval.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("eval")
