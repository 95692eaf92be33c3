-- Roll back 0005: drop quiz_analytics and progress_records with their indexes.
DROP INDEX IF EXISTS quiz_analytics_tree_node_id_idx;
DROP INDEX IF EXISTS quiz_analytics_user_id_answered_at_idx;
DROP TABLE IF EXISTS quiz_analytics;
DROP INDEX IF EXISTS progress_records_user_id_mastery_level_idx;
DROP INDEX IF EXISTS progress_records_last_session_id_idx;
DROP INDEX IF EXISTS progress_records_tree_node_id_idx;
DROP TABLE IF EXISTS progress_records;
