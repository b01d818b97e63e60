"""Shared code for the numbered msmarco-search scripts."""
