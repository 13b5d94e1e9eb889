"""Community integrations (outgoing webhooks) and their health monitor job."""
