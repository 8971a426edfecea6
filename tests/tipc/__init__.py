"""Tests that need a TIPC kernel; see conftest.py for where they run."""
