"""Watching the platform itself: alerts, missed-run watchdog, stuck-run reaper, retention."""
