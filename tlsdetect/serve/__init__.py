"""The REST API (``tlsdetect serve``).

``app`` (the factory and the routes), ``holder`` (settings, the baseline and its reloads), ``models``
(pydantic), ``responses`` (JSON answers and errors), ``middleware`` (body limit, instrumentation and
the cached-lookup fast path), ``metrics`` (the Prometheus registry of one app).
"""
