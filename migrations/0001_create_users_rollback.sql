-- Roll back 0001: drop the users table and its indexes.
DROP INDEX IF EXISTS users_created_at_idx;
DROP INDEX IF EXISTS users_email_lower_key;
DROP TABLE IF EXISTS users;
