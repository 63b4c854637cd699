-- A rolled back target records its device's way back: 'rolled_back' once the device reports
-- serving the version it ran before. Until then, what the device reports about the rollout's own
-- version still moves the target (a probation failure that arrives after the roll back decision
-- is counted as one), so the wave's numbers end truthful instead of frozen at the decision.
ALTER TABLE deployment_targets DROP CONSTRAINT deployment_targets_state_check;
ALTER TABLE deployment_targets ADD CONSTRAINT deployment_targets_state_check
  CHECK (state IN ('pending', 'in_progress', 'serving', 'failed', 'superseded', 'rolled_back'));
