"""Airflow hooks: a Connection in, a configured gateway client out."""
