-- A wave's assignment writes one deployment_targets row per device, and the foreign key to
-- devices checked each one with SELECT ... FOR KEY SHARE: a row lock on every device assigned,
-- which set 100,000 device rows' lock fields (dirtying their pages) and was about 0.9 s of the
-- 3.5 s a 100,000-device wave took to write (docs/benchmarks.md, "Fleet scale"). The key
-- guarded nothing the schema does not already hold:
-- - a target is only ever written by the assignment statement, which joins devices, so its
--   device exists when it is written;
-- - a device is never deleted (decommissioning keeps its row, and its id never changes), which
--   the trigger below now makes a rule instead of a habit, with a message that says why.
ALTER TABLE deployment_targets DROP CONSTRAINT deployment_targets_device_id_fkey;

CREATE FUNCTION refuse_device_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'device % cannot be deleted: decommission it instead', OLD.id
    USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER devices_are_never_deleted BEFORE DELETE ON devices
  FOR EACH ROW EXECUTE FUNCTION refuse_device_delete();
