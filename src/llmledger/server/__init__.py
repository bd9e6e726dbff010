"""The llmledger service: an HTTP API over the ledger database (``llmledger serve``).

Example:
    >>> from llmledger.core.settings import load_settings
    >>> app = create_app(load_settings(database_url="sqlite://"))
    >>> app.title
    'llmledger'
"""

from llmledger.server.app import create_app

__all__ = ["create_app"]
