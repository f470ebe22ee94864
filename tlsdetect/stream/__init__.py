"""Streaming: follow a log (``follow``), score micro-batches and deliver alerts (``loop``), commit where
it stands (``checkpoint``) and count (``metrics``). The alert sinks live in :mod:`tlsdetect.sinks.alerts`."""
