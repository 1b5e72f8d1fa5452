"""Pulumi component resources, one per concern. Type tokens: rancher-ha:<module>:<Name>."""
