-- Every deployment is a release with its own metadata version, taken from the one counter at
-- deploy time, and the manifest signed at check-in carries it. So deploying an older version
-- again issues a higher metadata version pointing at the old artifact, which agents accept
-- (TUF protects metadata, not the age of the bytes); a replayed older manifest is still lower.
ALTER TABLE deployments ADD COLUMN metadata_version bigint;
-- Deployments made before keep their version's number, as their devices already hold it.
UPDATE deployments d SET metadata_version = mv.metadata_version
  FROM model_versions mv WHERE mv.model_name = d.model_name AND mv.version = d.version;
ALTER TABLE deployments ALTER COLUMN metadata_version SET NOT NULL;
ALTER TABLE deployments
  ALTER COLUMN metadata_version SET DEFAULT nextval('release_metadata_version_seq');
