-- Field telemetry windows: one row per (device, outbox stream, sequence) — the agent's
-- idempotency key, so a window delivered twice is stored once. Daily range partitions on
-- window_start: retention drops whole partitions instead of deleting rows, and a query over a
-- time range reads only its days. The summaries themselves (latency sketch, feature and output
-- histograms) are the agent's edgefleet.v1.TelemetryWindow, kept as sent; the counts a query
-- filters or sums on are columns.
CREATE TABLE telemetry_windows (
  device_id text NOT NULL,
  stream_id bigint NOT NULL,
  sequence bigint NOT NULL,
  model_name text NOT NULL,
  version text NOT NULL,
  -- The device's hw label when the window arrived: roll-ups are per (model, version, hw).
  hw text NOT NULL DEFAULT '',
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  request_count bigint NOT NULL CHECK (request_count >= 0),
  error_count bigint NOT NULL CHECK (error_count >= 0),
  summary bytea NOT NULL,
  -- The partition key must be part of the key; a retried window repeats its window_start.
  PRIMARY KEY (device_id, stream_id, sequence, window_start)
) PARTITION BY RANGE (window_start);
CREATE INDEX telemetry_windows_version_idx ON telemetry_windows (model_name, version, window_start);

-- Creates the daily partitions covering [from_day, to_day] that do not exist yet. Called by the
-- server at start and on its maintenance tick, so that every day a window may be accepted for
-- has its partition; a window for a day with none is refused, never stored elsewhere.
CREATE FUNCTION edgefleet_ensure_telemetry_partitions(from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  day date := from_day;
  created integer := 0;
  name text;
BEGIN
  -- Replicas run this at the same moments: one at a time, so none trips on another's CREATE.
  PERFORM pg_advisory_xact_lock(hashtext('edgefleet_telemetry_partitions'));
  WHILE day <= to_day LOOP
    name := 'telemetry_windows_' || to_char(day, 'YYYYMMDD');
    IF to_regclass(name) IS NULL THEN
      -- Days are UTC days, whatever the session's time zone.
      EXECUTE format('CREATE TABLE %I PARTITION OF telemetry_windows FOR VALUES FROM (%L) TO (%L)',
                     name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
    day := day + 1;
  END LOOP;
  RETURN created;
END $$;

-- Drops the daily partitions wholly before `before_day` (retention).
CREATE FUNCTION edgefleet_drop_telemetry_partitions(before_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  part record;
  dropped integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('edgefleet_telemetry_partitions'));
  FOR part IN
    SELECT c.relname FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.relname = 'telemetry_windows'
       AND c.relname ~ '^telemetry_windows_[0-9]{8}$'
       AND to_date(substring(c.relname from '[0-9]{8}$'), 'YYYYMMDD') < before_day
  LOOP
    EXECUTE format('DROP TABLE %I', part.relname);
    dropped := dropped + 1;
  END LOOP;
  RETURN dropped;
END $$;
