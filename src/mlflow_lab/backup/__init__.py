"""Backup and restore of a running lab: one archive holding the tracking database (a
`pg_dump` in custom format), every object under the artifact destination, and a manifest
with versions, row counts and a sha256 per file.

- `archive`: the file format (write, unpack and verify); knows nothing of the lab.
- `database`: a consistent dump with its row counts; a restore that swaps databases.
- `artifacts`: the objects, through the tracking server's artifact proxy (as clients see them).
- `operations`: `backup()` and `restore()`, the order of their steps and what they say.
"""
