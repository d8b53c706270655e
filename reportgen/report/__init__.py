"""The report: its typed model, manifest.json, the HTML pages and their views."""
