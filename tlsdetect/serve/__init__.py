"""The REST API (``tlsdetect serve``)."""
