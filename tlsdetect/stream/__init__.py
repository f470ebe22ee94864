"""Streaming: follow a log, score each batch, deliver alerts exactly once."""
