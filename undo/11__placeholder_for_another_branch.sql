-- Undo of the V11 placeholder: nothing (see the migration).
SELECT 1;
