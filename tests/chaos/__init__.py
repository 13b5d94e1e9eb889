"""Chaos tests: real processes killed and real connections cut, asserted from the outside."""
