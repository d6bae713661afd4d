"""Reliability runs of the real daemon against the emulator: faults, outages, disk, clock."""
