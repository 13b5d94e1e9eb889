"""Member notifications (email, push, digests): the catalogue's notification jobs live here."""
