-- Telemetry windows agents report they lost (dropped from a full outbox, or refused by the
-- server for good). Agents send cumulative counts per outbox stream; the server keeps the last
-- ones it saw per device to turn them into increments (a new stream or a lower count is an agent
-- whose state was wiped: it starts again from zero), and the device's lifetime totals.
CREATE TABLE telemetry_drops (
  device_id text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
  stream_id bigint NOT NULL DEFAULT 0,
  reported_outbox_full bigint NOT NULL DEFAULT 0 CHECK (reported_outbox_full >= 0),
  reported_refused bigint NOT NULL DEFAULT 0 CHECK (reported_refused >= 0),
  total_outbox_full bigint NOT NULL DEFAULT 0 CHECK (total_outbox_full >= 0),
  total_refused bigint NOT NULL DEFAULT 0 CHECK (total_refused >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);
