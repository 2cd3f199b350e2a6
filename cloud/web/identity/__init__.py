"""Who people are: built-in accounts' links (invitations, password resets), outgoing mail, personal
preferences, and sign-in through Keycloak.

The portals call into here rather than building links or talking to Keycloak themselves:

- ``invites.invite_user`` / ``invites.invite_link_for``: a tenant's team page invites people;
- ``invites.reset_link_for`` / ``invites.send_or_return_link``: an operator or admin resets a password;
- ``keycloak.keycloak_team``: the team page of a tenant that signs in through Keycloak.
"""
