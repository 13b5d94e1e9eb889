"""Content flags and their SLA escalation: the catalogue's moderation jobs live here."""
