"""Alembic migrations of the jobs tables, shipped inside the package (`jobs:migrations`)."""
