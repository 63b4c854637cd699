-- Drift thresholds per model (all its versions): PSI above `warn` warns, above `alert` alerts,
-- and under `min_samples` on either side a feature's drift is "insufficient data". A model
-- without a row uses the defaults (0.1, 0.25, 1000).
CREATE TABLE model_drift_thresholds (
  model_name text PRIMARY KEY REFERENCES models (name),
  warn double precision NOT NULL CHECK (warn > 0),
  alert double precision NOT NULL CHECK (alert > warn),
  min_samples bigint NOT NULL CHECK (min_samples > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL DEFAULT ''
);
