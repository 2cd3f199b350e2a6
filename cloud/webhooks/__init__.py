"""Tenant webhooks: events recorded in the same transaction as their cause, delivered signed, retried."""
