"""Reconciliation: the provider's organisation usage and cost beside the ledger.

:mod:`llmledger.reconcile.providers` reads the providers' admin APIs;
:mod:`llmledger.reconcile.compare` (pure) matches day by model and names causes.
"""

from llmledger.reconcile.compare import Difference, UsageRow, compare

__all__ = ["Difference", "UsageRow", "compare"]
