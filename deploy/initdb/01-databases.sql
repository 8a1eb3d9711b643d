-- Dagster's storage and the CAMS warehouse in databases of their own (docs/operations.md).
CREATE DATABASE dagster;
CREATE DATABASE cams;
