"""``python tools/export.py ...`` is ``rezoo export ...``: see ``rezoo export --help`` and rezoo/export.py."""

from rezoo.cli import tool

if __name__ == "__main__":
    tool("export")
