-- Undo of the V13 placeholder: nothing (see the migration).
SELECT 1;
