"""Airflow sensors of the SMS provider."""
