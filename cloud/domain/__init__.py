"""The cloud's domain layer: the actions a tenant takes on its fleet, and the rules they keep, in
one place under both the REST API (cloud/api) and the tenant portal (cloud/web/tenant).

One module per subject (devices, configs, commands, pairing, projects, api_keys, webhooks, sessions,
usage). Each action takes its inputs explicitly: a ``Caller`` (the tenant's scope and the actor the
audit log names), the rows it acts on, and the app's services it needs (the downlink, the cloud's
configuration, the broker), never ``flask.g`` or the request, so a CLI or a worker can call it too.
An action audits and commits its change, or refuses with a ``DomainError`` and changes nothing.

Routes and views only translate: parse the request, look the rows up (``lookup.get_owned``), call
the domain, and render the result or the refusal (cloud/errors.py as JSON, cloud/web/refusals.py as
a page).
"""
