"""TemPolor through useapi.net: the client, its models and token format."""
