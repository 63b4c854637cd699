-- Late devices without re-scanning history. A device that becomes active or whose labels change
-- is queued here (by trigger, in the transaction that changed it); the rollout controller places
-- each queued device in the finished rollouts it now matches and then forgets the row. Running
-- rollouts pick up late devices at every evaluation on their own, so the controller no longer
-- evaluates every succeeded rollout each interval: its work grows with what changed, not with
-- the rollout history.
CREATE TABLE device_placement_queue (
  id bigserial PRIMARY KEY,
  device_id text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  queued_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION queue_device_placement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_placement_queue (device_id) VALUES (NEW.id);
  RETURN NULL;
END
$$;

CREATE TRIGGER devices_queue_placement_on_insert AFTER INSERT ON devices
  FOR EACH ROW WHEN (NEW.status = 'active') EXECUTE FUNCTION queue_device_placement();
CREATE TRIGGER devices_queue_placement_on_update AFTER UPDATE OF labels, status ON devices
  FOR EACH ROW WHEN (NEW.status = 'active' AND (OLD.labels IS DISTINCT FROM NEW.labels OR
                                                OLD.status IS DISTINCT FROM NEW.status))
  EXECUTE FUNCTION queue_device_placement();

-- Devices active before this migration are placed once more at the first pass (what the
-- controller did at every pass before).
INSERT INTO device_placement_queue (device_id) SELECT id FROM devices WHERE status = 'active';

-- The models a device's inventory (an edgefleet.v1.Inventory in protobuf JSON) reports, one row
-- each, digests decoded; an inventory without a models array reports none. The one place SQL
-- reads the inventory: what a rollout finds serving already (RolloutRepo::Assign) and what a
-- device may fetch again (DeviceRepo::MayFetchArtifact) read it alike.
CREATE FUNCTION inventory_models(inventory jsonb)
RETURNS TABLE (model_name text, version text, state text, artifact_sha256 bytea)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT m ->> 'model_name', m ->> 'version', m ->> 'state',
         CASE WHEN m ? 'artifact_sha256' THEN decode(m ->> 'artifact_sha256', 'base64') END
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(inventory -> 'models') = 'array'
                                 THEN inventory -> 'models' ELSE '[]'::jsonb END) AS m
$$;
