-- Undo of the V10 placeholder: nothing (see the migration).
SELECT 1;
