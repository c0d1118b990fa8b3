"""Pure protocol helpers: phone numbers, code tables, XML replies, MMS packages. No I/O, no Airflow."""
