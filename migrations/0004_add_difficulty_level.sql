-- Add difficulty_level to quiz_sessions (easy / medium / hard / expert), with an index.
-- A constant default keeps this a catalog-only change (no table rewrite, PG11+).
ALTER TABLE quiz_sessions
    ADD COLUMN difficulty_level VARCHAR(20) NOT NULL DEFAULT 'medium';

ALTER TABLE quiz_sessions
    ADD CONSTRAINT quiz_sessions_difficulty_level_check
    CHECK (difficulty_level IN ('easy', 'medium', 'hard', 'expert'));

-- Sessions of a topic at a given difficulty (adaptive question selection, reports).
CREATE INDEX quiz_sessions_tree_node_id_difficulty_level_idx
    ON quiz_sessions (tree_node_id, difficulty_level);
