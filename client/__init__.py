"""A terminal client for Parley: `python -m client chat`. Standard library and httpx2 only."""
