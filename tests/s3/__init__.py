"""A real S3 server (OpenStack Swift + s3api) for the team-workflow tests."""
