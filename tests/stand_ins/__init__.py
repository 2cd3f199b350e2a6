"""Stand-ins for servers that cannot be installed on these machines (docs/design.md): each serves only the
documented endpoints and response shapes our adapters call, and is used only by tests."""
