"""``python tools/demo.py ...`` is ``rezoo demo ...``: see ``rezoo demo --help`` and rezoo/demo.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("demo")
