"""The study database: its schema, the storage (SQLite or PostgreSQL), heartbeats, warm start,
the noise of a trial's mean, the winner a study reports, and its results read back.

Owns: every read and write of a study; nothing else opens the database.
May import: `tuner.config`, `tuner.errors`.
"""
