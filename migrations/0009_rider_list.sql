-- Indexes for the sort orders of the staff rider list (GET /api/v1/riders):
-- by first name, birth date and last update. The default order, by last
-- name, uses person_name from 0001_core.sql.
CREATE INDEX person_first_name ON person (first_name COLLATE NOCASE, last_name COLLATE NOCASE);
CREATE INDEX person_birth_date ON person (birth_date);
CREATE INDEX person_updated_at ON person (updated_at);
