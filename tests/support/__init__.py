"""Helpers shared by tests: real sockets and processes standing in for what production talks to."""
