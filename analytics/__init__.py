"""Activity events, rollups, leaderboards and backfills: the catalogue's analytics jobs."""
