"""Signals other apps listen to when community data changes under them."""

from django.dispatch import Signal

# Sent inside the transaction that anonymised members past retention, with
# `community` and `member_ids`; apps holding personal data of those members erase it.
members_anonymized = Signal()
