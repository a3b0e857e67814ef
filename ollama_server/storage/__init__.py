"""SQLite storage through sqlite-utils: the metrics store and its schema."""
