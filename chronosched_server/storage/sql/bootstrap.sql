-- Cluster bootstrap for the embedded PostgreSQL of `chronosched up`
-- (storage/bootstrap.py), run on the admin connection as superuser. The
-- statements that name an identifier (ALTER SYSTEM, CREATE DATABASE) are
-- utility statements that can be neither PREPAREd nor parameterised; they are
-- composed in bootstrap.py instead.

-- name: reload_conf
select pg_reload_conf();

-- name: database_exists
select 1 from pg_database where datname = %(database)s::text;
