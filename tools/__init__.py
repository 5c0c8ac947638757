"""Helpers run by people and by the CI jobs (through the Makefile): see tools/rollout/."""
