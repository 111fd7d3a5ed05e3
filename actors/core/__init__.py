"""Contracts shared by every domain: instruments, the market-data batch, messages, clocks."""
