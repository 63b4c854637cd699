-- Staged rollouts. A rollout owns one deployments row (its model version, selector and release
-- metadata version); deployment_targets stays the ONE table of per-device desired state, written
-- only by the rollout component (the controller assigns waves; `deploy create` is a one-wave
-- rollout) and moved only by device events. Check-in reads it.

CREATE TABLE rollouts (
  name text PRIMARY KEY,
  deployment_id bigint NOT NULL UNIQUE REFERENCES deployments (id) ON DELETE CASCADE,
  -- The validated spec: an edgefleet.v1.Rollout (protobuf JSON) as NewRollout(definition) gives
  -- (name, model, version, selector, on_failure, every wave's normalised spec).
  definition jsonb NOT NULL,
  state text NOT NULL
    CHECK (state IN ('pending', 'running', 'paused', 'succeeded', 'aborted', 'rolled_back')),
  current_wave integer NOT NULL DEFAULT 0 CHECK (current_wave >= 0),
  wave_started_at timestamptz,
  soak_started_at timestamptz,
  promote_requested boolean NOT NULL DEFAULT false,
  matching_devices bigint NOT NULL DEFAULT 0,
  description text NOT NULL DEFAULT '',
  created_by text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
-- The controller's loop looks for the rollouts it still acts on.
CREATE INDEX rollouts_active_idx ON rollouts (state) WHERE state IN ('pending', 'running');

-- Decision events, oldest first: an edgefleet.v1.RolloutEvent in protobuf JSON, its kind readable.
CREATE TABLE rollout_events (
  id bigserial PRIMARY KEY,
  rollout_name text NOT NULL REFERENCES rollouts (name) ON DELETE CASCADE,
  kind text NOT NULL,
  wave integer NOT NULL DEFAULT 0,
  event jsonb NOT NULL,
  at timestamptz NOT NULL
);
CREATE INDEX rollout_events_rollout_idx ON rollout_events (rollout_name, id);

-- Per-device targets carry their wave, why they failed, when they were targeted (for the serving
-- timeout), the version the device ran before (for a roll back) and, once rolled back, the
-- metadata version minted for sending it back (higher than the deployment's, so the agent's
-- rollback protection holds). A rolled back target keeps the state its device reported, for the
-- wave's counts; device events no longer move it.
ALTER TABLE deployment_targets
  ADD COLUMN wave integer NOT NULL DEFAULT 0,
  ADD COLUMN reason text NOT NULL DEFAULT '',
  ADD COLUMN targeted_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN previous_version text,
  ADD COLUMN rollback_metadata_version bigint;
CREATE INDEX deployment_targets_wave_idx ON deployment_targets (deployment_id, wave, state);

-- Deployments made before this migration become one-wave rollouts that have succeeded, so the
-- controller keeps giving their version to devices that start matching later (check-in no
-- longer does). Their definition is rollout::SingleWavePlan: the wave "100%" with no soak (the
-- controller fills in the default gates).
INSERT INTO rollouts (name, deployment_id, definition, state, created_by, created_at, updated_at,
                      finished_at)
SELECT 'deploy-' || d.id, d.id,
       jsonb_build_object('name', 'deploy-' || d.id, 'model_name', d.model_name,
                          'version', d.version, 'label_selector', d.label_selector,
                          'on_failure', 'ROLLOUT_FAILURE_ACTION_PAUSE',
                          'waves', jsonb_build_array(jsonb_build_object('index', 0, 'spec',
                              jsonb_build_object('percent', 100, 'soak', '0s')))),
       'succeeded', 'migration 0006', d.created_at, now(), now()
FROM deployments d;
