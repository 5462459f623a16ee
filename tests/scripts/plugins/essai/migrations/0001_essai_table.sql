-- Test fixture: a table owned by the plugin "essai".
CREATE TABLE essai_note (person_id INTEGER NOT NULL, note TEXT NOT NULL);
