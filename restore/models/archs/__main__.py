"""``python -m restore.models.archs [FILE.md ...]``: print the architecture table, or regenerate it in
place between the ``<!-- arch-table:begin -->`` / ``<!-- arch-table:end -->`` markers of each file."""

import sys
from pathlib import Path

from ._table import table_markdown, update_markdown

if len(sys.argv) == 1:
    print(table_markdown(), end="")
for arg in sys.argv[1:]:
    path = Path(arg)
    path.write_text(update_markdown(path.read_text()))
