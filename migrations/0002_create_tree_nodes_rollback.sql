-- Roll back 0002: drop the tree_nodes table and its indexes.
DROP INDEX IF EXISTS tree_nodes_root_slug_key;
DROP INDEX IF EXISTS tree_nodes_parent_id_slug_key;
DROP INDEX IF EXISTS tree_nodes_created_by_idx;
DROP INDEX IF EXISTS tree_nodes_parent_id_sort_order_idx;
DROP TABLE IF EXISTS tree_nodes;
