-- Placeholder: V8 to V11 are being written on other branches; this branch's own
-- migrations are V12 and V13, and build.rs wants versions 1..n.
-- Drop this file and its undo when merging those branches.
SELECT 1;
