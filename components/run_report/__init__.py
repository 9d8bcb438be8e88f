"""A static HTML report of one pipeline run: data, metrics, charts, gate decisions, push."""
