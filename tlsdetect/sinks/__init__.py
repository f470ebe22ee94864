"""Where results go: table files (``files``) and SIEM alerts (``alerts``)."""
