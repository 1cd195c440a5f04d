-- Undo of the V12 placeholder: nothing (see the migration).
SELECT 1;
