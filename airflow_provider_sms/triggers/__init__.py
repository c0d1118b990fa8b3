"""Airflow triggers of the SMS provider."""
