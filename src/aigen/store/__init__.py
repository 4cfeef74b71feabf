"""PostgreSQL: the connection pool, the migrations in sql/, and the repository (all SQL)."""
