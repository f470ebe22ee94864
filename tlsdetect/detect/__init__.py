"""Detection: issuers, knowledge, baselines, scoring, lookups and evaluation."""
