"""The pure core: ids, the exception tree, usage buckets, the event record, attribution and
settings. Nothing here opens a file, a socket or a database, or reads the clock unasked."""
