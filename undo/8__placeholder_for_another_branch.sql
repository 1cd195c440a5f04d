-- Undo of the V8 placeholder: nothing (see the migration).
SELECT 1;
