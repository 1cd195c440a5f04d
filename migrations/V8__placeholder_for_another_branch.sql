-- Placeholder: V8 and V9 are being written on other branches (issue 21's merge
-- plan); this branch's own migration is V10, and build.rs wants versions 1..n.
-- Drop this file and its undo when merging those branches.
SELECT 1;
