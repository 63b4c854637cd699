-- Roll-ups of the telemetry windows per (model, version, hw, reference profile, minute).
--
-- Every stored window must be counted exactly once, with several server replicas, a replica
-- crashing anywhere, and windows arriving days late. A roll-up job (any replica, one at a time
-- through an advisory lock) reads the windows whose inserting transaction is older than every
-- transaction still running (pg_snapshot_xmin): no window below that horizon can appear later,
-- and none above it is taken yet. The horizon becomes the watermark in the same transaction as
-- the roll-up rows it wrote, so a crash before the commit leaves both untouched. A timestamp
-- watermark (received_at) would miss windows of an upload that commits after a later one.
--
-- The inserting transaction id, as a bigint so that a BRIN index covers it: ids grow with the
-- heap, so BRIN finds the new windows at the cost of a few pages per partition, and costs the
-- insert almost nothing (a btree would add a third index to every window). Windows stored before
-- this migration read 0 (a constant default: no table rewrite), below the first horizon: the
-- first run rolls them up. Windows stored from now on get their transaction's id.
ALTER TABLE telemetry_windows ADD COLUMN ingest_xid bigint NOT NULL DEFAULT 0;
ALTER TABLE telemetry_windows
  ALTER COLUMN ingest_xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX telemetry_windows_ingest_xid_idx ON telemetry_windows USING brin (ingest_xid)
  WITH (autosummarize = on);

-- Partial roll-ups: each run appends one row per group and minute it saw windows of (late
-- windows add a row to their old minute); readers merge the rows of a minute by addition.
-- `summary` is an edgefleet.v1.TelemetryWindow holding the merged summaries (errors by reason,
-- latency sketch, feature and output bins); windows, requests and errors are columns so that
-- counts need no decoding. Retention deletes rows by bucket_start (they are ~1000x fewer than
-- windows: no partitions needed).
CREATE TABLE telemetry_rollups (
  id bigserial PRIMARY KEY,
  model_name text NOT NULL,
  version text NOT NULL,
  hw text NOT NULL,
  profile_sha256 bytea NOT NULL,  -- empty when the windows carried no profile
  bucket_start timestamptz NOT NULL,  -- the minute the windows' window_start falls in (UTC)
  windows bigint NOT NULL CHECK (windows > 0),
  requests bigint NOT NULL CHECK (requests >= 0),
  errors bigint NOT NULL CHECK (errors >= 0),
  summary bytea NOT NULL
);
CREATE INDEX telemetry_rollups_series_idx ON telemetry_rollups (model_name, version, bucket_start);
CREATE INDEX telemetry_rollups_bucket_idx ON telemetry_rollups (bucket_start);

-- Where the next roll-up run starts: windows with ingest_xid >= next_xid are not rolled up yet.
CREATE TABLE telemetry_rollup_watermark (
  id integer PRIMARY KEY CHECK (id = 1),
  next_xid bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO telemetry_rollup_watermark (id, next_xid) VALUES (1, 0);
