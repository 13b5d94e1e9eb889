"""Subscriptions, invoices and dunning through Stripe: the catalogue's billing jobs live here."""
