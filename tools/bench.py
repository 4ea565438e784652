"""``python tools/bench.py ...`` is ``rezoo bench ...``: see ``rezoo bench --help`` and rezoo/bench.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("bench")
