"""The REST API: operators (bearer token) and community admins (per-community API keys)."""
