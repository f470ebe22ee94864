"""Readers: files of one kind -> chunks of the connections table, under one contract (``base``)."""
