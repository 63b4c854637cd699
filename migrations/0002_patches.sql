-- Differential updates: one row per (from artifact, to artifact) pair, computed once in the
-- background and served to every device that holds the from-artifact.

CREATE TABLE patches (
  from_sha256 bytea NOT NULL CHECK (length(from_sha256) = 32),
  to_sha256 bytea NOT NULL CHECK (length(to_sha256) = 32),
  -- pending: queued or computing; ready: patch_sha256 is in the artifact store;
  -- not_smaller: the full artifact is the better offer; failed: see detail.
  state text NOT NULL CHECK (state IN ('pending', 'ready', 'not_smaller', 'failed')),
  codec text NOT NULL DEFAULT '',
  patch_sha256 bytea CHECK (patch_sha256 IS NULL OR length(patch_sha256) = 32),
  size_bytes bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
  compute_seconds double precision NOT NULL DEFAULT 0,
  detail text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (from_sha256, to_sha256)
);
-- FetchArtifact asks whether a digest is a known patch.
CREATE INDEX patches_patch_sha256_idx ON patches (patch_sha256);
