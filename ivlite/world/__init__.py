"""Tiny world placeholder (filled in below)."""
