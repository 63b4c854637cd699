-- Reference profiles: what each model version's drift is measured against. One row per version
-- at most, written once: an uploaded profile in the transaction that registers the version, or
-- a fleet profile merged from the version's first telemetry windows (the primary key makes it
-- once across server replicas; a restart finds the row and does not make it again). `profile` is
-- the edgefleet.v1.ReferenceProfile as stored (its profile_sha256 recomputed by the server); the
-- columns are what a summary shows without reading it.
CREATE TABLE reference_profiles (
  model_name text NOT NULL,
  version text NOT NULL,
  source smallint NOT NULL CHECK (source IN (1, 2)),  -- ReferenceSource: UPLOADED, FLEET
  samples bigint NOT NULL CHECK (samples >= 0),
  windows bigint NOT NULL CHECK (windows >= 0),
  feature_count integer NOT NULL CHECK (feature_count >= 0),
  profile_sha256 bytea NOT NULL CHECK (length(profile_sha256) = 32),
  profile bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (model_name, version),
  FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
);
