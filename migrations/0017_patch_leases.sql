-- Patch computations are claimed through the database so that replicas sharing it compute each
-- pair once: a replica takes a pending pair by setting lease_owner and lease_expires_at, renews
-- the lease while it computes, and records the outcome only while it still holds it. A replica
-- that dies mid-computation leaves an expired lease, and another replica takes the pair over.
ALTER TABLE patches
  ADD COLUMN lease_owner text,
  ADD COLUMN lease_expires_at timestamptz,
  -- Computations started for the pair; a pair whose computations keep dying is given up.
  ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);

-- What the claim query scans: the pending pairs, oldest first.
CREATE INDEX patches_pending_idx ON patches (created_at) WHERE state = 'pending';
