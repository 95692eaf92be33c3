-- Roll back 0003: drop the quiz_sessions table and its indexes.
DROP INDEX IF EXISTS quiz_sessions_in_progress_idx;
DROP INDEX IF EXISTS quiz_sessions_tree_node_id_idx;
DROP INDEX IF EXISTS quiz_sessions_user_id_started_at_idx;
DROP TABLE IF EXISTS quiz_sessions;
