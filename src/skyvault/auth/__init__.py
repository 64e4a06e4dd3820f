"""Identity, groups, tokens and access rules."""
