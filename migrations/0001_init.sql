-- Initial edgefleet schema: operators, enrollment, devices, model registry, deployments, telemetry.
-- Enum-like text columns hold the lower-case proto enum name without its prefix
-- (DEVICE_STATUS_ACTIVE -> 'active') so ad-hoc SQL stays readable.

CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
  name text PRIMARY KEY,
  role text NOT NULL CHECK (role IN ('admin', 'release-manager', 'viewer')),
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE enrollment_tokens (
  id text PRIMARY KEY,
  token_hash bytea NOT NULL UNIQUE,
  labels jsonb NOT NULL DEFAULT '{}',
  max_uses integer NOT NULL CHECK (max_uses > 0),
  uses integer NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
  expires_at timestamptz NOT NULL,
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
  id text PRIMARY KEY,
  status text NOT NULL CHECK (status IN ('pending', 'active', 'decommissioned')),
  labels jsonb NOT NULL DEFAULT '{}',
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  inventory jsonb,
  certificate_serial text,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Label selectors are jsonb containment (labels @> selector).
CREATE INDEX devices_labels_idx ON devices USING gin (labels jsonb_path_ops);
CREATE INDEX devices_status_idx ON devices (status);

CREATE TABLE models (
  name text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One counter for every signed release manifest; agents refuse a lower one (rollback protection).
CREATE SEQUENCE release_metadata_version_seq AS bigint START WITH 1;

CREATE TABLE model_versions (
  model_name text NOT NULL REFERENCES models (name),
  version text NOT NULL,
  format text NOT NULL,
  artifact_sha256 bytea NOT NULL CHECK (length(artifact_sha256) = 32),
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  inputs jsonb NOT NULL DEFAULT '[]',
  outputs jsonb NOT NULL DEFAULT '[]',
  labels jsonb NOT NULL DEFAULT '{}',
  metadata_version bigint NOT NULL UNIQUE,
  signed_manifest bytea NOT NULL,
  signature bytea NOT NULL,
  key_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (model_name, version)
);
-- Garbage collection of artifacts asks whether any version still references a digest.
CREATE INDEX model_versions_artifact_idx ON model_versions (artifact_sha256);

CREATE TABLE deployments (
  id bigserial PRIMARY KEY,
  model_name text NOT NULL,
  version text NOT NULL,
  selector jsonb NOT NULL DEFAULT '{}',
  label_selector text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
);
-- Desired state: the latest deployment per model.
CREATE INDEX deployments_model_idx ON deployments (model_name, id DESC);

CREATE TABLE deployment_targets (
  deployment_id bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
  device_id text NOT NULL REFERENCES devices (id),
  state text NOT NULL
    CHECK (state IN ('pending', 'in_progress', 'serving', 'failed', 'superseded')),
  detail text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (deployment_id, device_id)
);
CREATE INDEX deployment_targets_device_idx ON deployment_targets (device_id);

CREATE TABLE device_events (
  id bigserial PRIMARY KEY,
  device_id text NOT NULL REFERENCES devices (id),
  model_name text NOT NULL,
  version text NOT NULL,
  kind text NOT NULL,
  reason text NOT NULL DEFAULT 'unspecified',
  detail text NOT NULL DEFAULT '',
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_events_device_idx ON device_events (device_id, id DESC);
CREATE INDEX device_events_model_idx ON device_events (model_name, version, occurred_at);

CREATE TABLE model_telemetry (
  id bigserial PRIMARY KEY,
  device_id text NOT NULL REFERENCES devices (id),
  model_name text NOT NULL,
  version text NOT NULL,
  inference_count bigint NOT NULL CHECK (inference_count >= 0),
  error_count bigint NOT NULL CHECK (error_count >= 0),
  latency_p50_seconds double precision NOT NULL DEFAULT 0,
  latency_p95_seconds double precision NOT NULL DEFAULT 0,
  latency_p99_seconds double precision NOT NULL DEFAULT 0,
  latency_max_seconds double precision NOT NULL DEFAULT 0,
  latency_sum_seconds double precision NOT NULL DEFAULT 0,
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
-- Fleet aggregates and rollout health gates read recent windows per model version.
CREATE INDEX model_telemetry_model_idx ON model_telemetry (model_name, version, window_end);
CREATE INDEX model_telemetry_device_idx ON model_telemetry (device_id, window_end);

CREATE TABLE audit_log (
  id bigserial PRIMARY KEY,
  actor text NOT NULL,
  action text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}',
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
