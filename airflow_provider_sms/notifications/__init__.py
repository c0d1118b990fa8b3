"""Airflow notifications of the SMS provider."""
