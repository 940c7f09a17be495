"""Widgets shared by the studio's screens."""
