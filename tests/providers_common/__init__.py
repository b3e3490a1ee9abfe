"""Helpers shared by the provider tests: a loopback HTTP server, scripted model APIs in
the OpenAI and Anthropic wire formats, the wire-fixture loader and the fault suite."""
