"""Bulk dispatch: recipients in, one stated outcome per recipient out.

Batching, bounded concurrency, a rate limit that is never exceeded, retries by class, a durable
ledger against duplicates, progress, reports. No Airflow import here: operators and hooks wrap it.
"""
