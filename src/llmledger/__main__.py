"""``python -m llmledger``: the same command as ``llmledger``."""

from __future__ import annotations

if __name__ == "__main__":
    from llmledger.cli import main

    main(prog_name="llmledger")
