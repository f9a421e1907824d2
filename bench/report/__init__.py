"""BENCHMARKS.md, rendered from bench/results.json alone (`bench/run.py --render` renders it again): the page
(page.py), the rows of the figures every store has (suite.py), of those measured on PostgreSQL alone
(postgres.py), and the serving tier's own table (serving.py)."""
