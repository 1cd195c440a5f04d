-- Undo of the V9 placeholder: nothing (see the migration).
SELECT 1;
