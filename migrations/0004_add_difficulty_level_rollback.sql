-- Roll back 0004: remove difficulty_level, its check constraint and its index.
DROP INDEX IF EXISTS quiz_sessions_tree_node_id_difficulty_level_idx;
ALTER TABLE quiz_sessions DROP CONSTRAINT IF EXISTS quiz_sessions_difficulty_level_check;
ALTER TABLE quiz_sessions DROP COLUMN IF EXISTS difficulty_level;
