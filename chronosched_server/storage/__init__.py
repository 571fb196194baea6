"""Storage layer: the only code that talks SQL to PostgreSQL."""
