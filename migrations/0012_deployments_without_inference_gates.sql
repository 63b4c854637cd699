-- Inference gates (issue 11) compare a wave's canaries with devices still on the previous
-- version; a `deploy create` deployment is one wave of 100% with no canary to compare, and new
-- ones are stored with the gates off (rollout::SingleWavePlan). The deployments' rollouts stored
-- before (named deploy-ID, one wave; migration 0006 or deploy create) say nothing about the new
-- gates and would read as "on": switch them off, so that a running deployment does not start
-- holding on them after the upgrade and every deployment reads as SingleWavePlan again.
UPDATE rollouts
SET definition = jsonb_set(definition, '{waves,0,spec,gates}',
                           coalesce(definition #> '{waves,0,spec,gates}', '{}'::jsonb)
                             || '{"inferenceGates": false}'::jsonb)
WHERE name = 'deploy-' || deployment_id
  AND jsonb_typeof(definition -> 'waves') = 'array'
  AND jsonb_array_length(definition -> 'waves') = 1
  AND definition #> '{waves,0,spec}' IS NOT NULL;
