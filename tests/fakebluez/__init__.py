"""A fake BlueZ for tests: python-dbusmock's bluez5 template, extended (see template.py)."""
