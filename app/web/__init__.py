"""The dashboard: an HTML page at `/` whose JavaScript reads the /v1 API with the user's API key."""
