"""Operators: MMS and SMS sends, and MMS template upload."""
