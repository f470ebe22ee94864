"""SIEM alert sinks: ECS JSON, RFC 5424 syslog, CEF, Splunk HEC, and their disk spool."""
