"""Closing a season: its stretch of the log archived with its proofs, taken out of the hot store, and brought back.

`seasons` closes, restores and opens a season for reading; `target` is where archives live (a pyarrow filesystem
URL: a local path, file://, s3://); `verification` checks an archive alone against its signed manifest and the chain.
"""
