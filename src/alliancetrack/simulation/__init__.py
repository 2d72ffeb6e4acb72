"""Simulated cohorts and validation against known truth (modules move here with the layout change)."""
