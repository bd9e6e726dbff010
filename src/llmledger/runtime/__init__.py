"""The write path inside the host process: the ledger, the manual recording paths, the
background writer, the remote sink and the prompt and response text waiting to be kept."""
