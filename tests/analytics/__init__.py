"""Tests of the analytics app: event store, leaderboards, rollups, warehouse backfills."""
