"""The `unfold` command-line client: talks to an Unfold API over HTTP (app.client.api)."""
