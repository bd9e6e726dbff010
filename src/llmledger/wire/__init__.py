"""Events as JSON: the one shape ``llmledger logs --json`` prints, the remote sink sends and
the service ingests (:mod:`llmledger.wire.serialize` writes it, :mod:`llmledger.wire.parse`
reads and validates it)."""
