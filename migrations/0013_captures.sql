-- The data loop back. A deployment (and so a rollout, which owns one) may carry a capture
-- request: an edgefleet.v1.CaptureSpec, serialized, delivered with the release to the devices
-- it targets. NULL: no capture.
ALTER TABLE deployments ADD COLUMN capture bytea;

-- Captured requests: one row per (device, outbox stream, sequence), the agent's idempotency key,
-- so a capture delivered twice is stored once. The payload (the edgefleet.v1.CaptureRecord as
-- sent) lives content-addressed in the capture store under sha256; the index holds what a query
-- filters on and what an export names.
CREATE TABLE captures (
  id bigserial PRIMARY KEY,
  device_id text NOT NULL,
  stream_id bigint NOT NULL,
  sequence bigint NOT NULL,
  model_name text NOT NULL,
  version text NOT NULL,
  captured_at timestamptz NOT NULL,
  -- UTC day of captured_at: the per-device daily byte cap is summed over it.
  captured_day date NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  trigger text NOT NULL CHECK (trigger IN ('random', 'low_confidence', 'out_of_range')),
  sha256 bytea NOT NULL CHECK (length(sha256) = 32),
  size_bytes bigint NOT NULL CHECK (size_bytes > 0),
  -- [{"name": ..., "shape": [...], "output": bool}] (edgefleet.v1.CapturedTensorInfo, JSON)
  tensors jsonb NOT NULL DEFAULT '[]',
  UNIQUE (device_id, stream_id, sequence)
);
CREATE INDEX captures_version_idx ON captures (model_name, version, captured_at, id);
CREATE INDEX captures_device_day_idx ON captures (device_id, captured_day);
-- Retention deletes by age; the blob goes once no row names its digest.
CREATE INDEX captures_received_idx ON captures (received_at);
CREATE INDEX captures_sha256_idx ON captures (sha256);
