"""Logs: rotation with logrotate, shipping to S3 exactly once, retention, and fetching lines back."""
