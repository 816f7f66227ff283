"""A run's process: the child side, the fork server, how the runner starts and reads it.

This package imports nothing heavy: no store, runner, web stack or SQLAlchemy.
"""
