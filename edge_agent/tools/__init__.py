"""Offline tools for technicians and developers: replay a trace, simulate and score a store
day, the demo, the live scan view, and the fleet load test. They drive the daemon's own parts."""
