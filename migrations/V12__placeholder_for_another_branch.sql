-- Placeholder: V8 to V13 are being written on other branches; this branch's own
-- migration is V14, and build.rs wants versions 1..n.
-- Drop this file and its undo when merging those branches.
SELECT 1;
